"""Relay from Python: run, resume and read pipeline runs from a notebook or a script (docs/API.md).

Users import it as ``import relay`` (relay/__init__.py re-exports ``__all__``).

Each call goes through what the `relay` command of the same name runs: `run` and `resume` call
what the commands' handlers run (``pipeline.start_run``, ``pipeline.resume_run``, which return the
run's id, store and parent MLflow run) with the arguments `relay` would have parsed, and the readers use the functions `relay generations` and `relay runs`
read with. So every check and fix of the CLI holds here too, and nothing is implemented twice.
Only the ending differs: bad input raises ``InputError`` carrying the message the CLI prints after
``relay:`` (where it exits 2), having written nothing; any other failure raises a ``RelayError``
(exit 1 there); nothing calls ``sys.exit``. A finished run comes back as a ``RunResult``.

Why in the CLI's package: it is the same composition root (the layers of docs/ARCHITECTURE.md let
only ``orchestrator.cli`` wire pipelines to the engine and to tracking).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import operator
import os
import reprlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.cli import MLFLOW_LEVEL_ENV, MLFLOW_TRACEBACK_LOGGERS, build_parser, pipeline, quiet_mlflow
from orchestrator.cli import runs as run_records
from orchestrator.cli.closing_lines import summary_rows
from orchestrator.cli.common import new_run_id, store_of
from orchestrator.cli.execution import RunEnd
from orchestrator.cli.generations import tracking_for
from orchestrator.cli.installed_pipelines import installed_pipelines
from orchestrator.cli.pipeline_files import BY_OVERRIDES
from orchestrator.cli.preflight import check_run_id
from orchestrator.cli.run_record import read_run_record, readable_ledger
from orchestrator.config import (
    RunSettings,
    apply_overrides,
    load_yaml,
    resolve_workspace,
)
from orchestrator.config.values import name_problem
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactRef, ArtifactStore, Manifest
from orchestrator.engine.ledger import CONFIG_FILE, DONE_STATES, LEDGER_FILE, record_path
from orchestrator.errors import ConfigError, InputError, RelayError
from orchestrator.tracking.lineage import MODEL, write_mlmodel
from orchestrator.tracking.mlflow_tracker import is_generation_stage
from orchestrator.tracking.reading import read_generations

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import torch

PathLike = str | Path
# The positional arguments `relay COMMAND` requires: placeholders, replaced by the call's values.
POSITIONALS = {"run": ["CONFIG"], "resume": ["RUN_ID"]}
PSEUDO_LABELS = "pseudo_labels"  # the role of a generation's pseudo-label table: artifact gNN/pseudo_labels


@dataclass(frozen=True)
class RunResult:
    """What a run (or resume) left: where to find it again, and its per-generation numbers.

    ``generations``: one dict per generation, ``{"generation": 0, "evaluate/balanced_accuracy": 0.71, ...}``,
    the numbers the run's closing table shows and its MLflow parent run holds at step = generation
    (read from the run's stage manifests, so they are there even when the tracking store stopped answering).
    ``status``: as `relay runs` shows it (FINISHED, STOPPED after ``stop_after``). ``mlflow_run_id``: the
    parent MLflow run (None when the tracking store lost the run, see ``relay generations``).
    """

    run_id: str
    status: str
    workspace: Path
    artifact_uri: str
    tracking_uri: str
    experiment: str
    mlflow_run_id: str | None
    generations: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def mlflow_quieted() -> Iterator[None]:
    """MLflow's loggers as `relay` sets them without -v (``configure_logging``), for one call; then as they were.

    Why: MLflow logs at INFO through its own handler, so a notebook printed what the CLI hides:
    "Creating initial MLflow database tables...", and the system-metrics monitor's start and stop
    lines for every stage. Only MLflow's loggers and MLFLOW_LOGGING_LEVEL (which MLflow reads when
    it is first imported, and Ray's workers inherit) change, and only while the call runs: the
    caller's root logger, its handlers and its levels stay theirs.
    """
    levels = {name: logging.getLogger(name).level for name in ("mlflow", *MLFLOW_TRACEBACK_LOGGERS)}
    env = os.environ.get(MLFLOW_LEVEL_ENV)
    quiet_mlflow(verbose=False)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if env is None:
            os.environ.pop(MLFLOW_LEVEL_ENV, None)
        else:
            os.environ[MLFLOW_LEVEL_ENV] = env


# --- running -----------------------------------------------------------------------------


@mlflow_quieted()
def run(
    config: PathLike | Mapping[str, Any],
    overrides: Sequence[str] = (),
    workspace: PathLike | None = None,
    address: str | None = None,
    *,
    run_id: str | None = None,
    stop_after: str | None = None,
    rerun_from: str | None = None,
    no_cache: bool = False,
) -> RunResult:
    """`relay run CONFIG OVERRIDES...`: check everything, run the pipeline, return its result.

    ``config``: a pipeline file, or its content as a mapping (as ``yaml.safe_load`` reads a file).
    ``overrides``: dotted ``key=value`` strings, as on the command line. ``workspace``: the same as
    the override ``run.workspace=PATH`` (default: $RELAY_WORKSPACE, else ./relay-workspace).
    ``address``, ``run_id``, ``stop_after``, ``rerun_from``, ``no_cache``: the flags of the same names.
    """
    checked_config_argument(config)
    given = [*checked_overrides(overrides), *workspace_override(checked_path("workspace", workspace))]
    checked_texts(address=address, run_id=run_id, stop_after=stop_after, rerun_from=rerun_from)
    checked_flag("no_cache", no_cache)
    with config_file(config) as path:
        chosen = run_id or generated_run_id(path, given)
        args = command_args(
            "run",
            config=str(path),
            overrides=given,
            address=address,
            run_id=chosen,
            stop_after=stop_after,
            rerun_from=rerun_from,
            no_cache=no_cache,
        )
        args.overrides_origin = BY_OVERRIDES  # a problem an override caused names it so: there is no command line
        return run_result(handled(pipeline.start_run, args))


@mlflow_quieted()
def resume(
    run_id: str,
    workspace: PathLike | None = None,
    address: str | None = None,
    *,
    artifact_uri: str | None = None,
    stop_after: str | None = None,
) -> RunResult:
    """`relay resume RUN_ID`: finish a run from its record; completed stages are skipped.

    ``workspace``/``artifact_uri``: where the run's record is (the flags --workspace, --artifact-uri).
    """
    checked_reader_args(run_id, workspace, artifact_uri)
    checked_texts(address=address, stop_after=stop_after)
    args = command_args(
        "resume",
        run_id=run_id,
        workspace=as_flag(workspace),
        artifact_uri=artifact_uri,
        address=address,
        stop_after=stop_after,
    )
    return run_result(handled(pipeline.resume_run, args))


def workspace_override(workspace: PathLike | None) -> list[str]:
    """``run.workspace=PATH`` for a workspace given, the value quoted so any path parses as one string."""
    return [] if workspace is None else [f"run.workspace={json.dumps(str(workspace))}"]


@contextlib.contextmanager
def config_file(config: PathLike | Mapping[str, Any]) -> Iterator[Path]:
    """The pipeline file to run: ``config`` itself, or a mapping written to a temporary file for as long as it runs.

    Why a file: the CLI reads and records a config by its file (the run record's command, the
    MLflow run's rerunnable config.yaml), and the temporary folder is outside every workspace.
    """
    if not isinstance(config, Mapping):
        yield Path(config)
        return
    name = config.get("name")
    stem = name if isinstance(name, str) and name_problem(name, "name") is None else "config"
    try:
        content = yaml.safe_dump(dict(config), sort_keys=False)
    except yaml.YAMLError as exc:
        raise ConfigError(
            [f"not plain YAML data (strings, numbers, lists, mappings): {exc}"], "the config mapping"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="relay-api-") as folder:
        path = Path(folder) / f"{stem}.yaml"
        path.write_text(content, encoding="utf-8")
        yield path


def generated_run_id(path: Path, overrides: Sequence[str]) -> str | None:
    """The id `relay run` would make up (``NAME-DATE-TIME-XXXX``), made here so the call can return it.

    None when the file or its name cannot be read: the run's own checks then say what is wrong,
    with the CLI's message, before any id is needed.
    """
    try:
        name = apply_overrides(load_yaml(path), list(overrides)).get("name")
    except ConfigError:
        return None
    return new_run_id(name) if isinstance(name, str) and name_problem(name, "name") is None else None


def command_args(command: str, **values: Any) -> argparse.Namespace:
    """The arguments `relay COMMAND` parses, every option at its CLI default, then ``values`` set.

    Parsed by the CLI's own parser, so an option added to the command has its default here too;
    a value for an option the command no longer has is a TypeError (the API fell behind the CLI).
    """
    args = build_parser().parse_args([command, *POSITIONALS.get(command, [])])
    unknown = sorted(set(values) - set(vars(args)))
    if unknown:
        raise TypeError(f"`relay {command}` has no option {', '.join(unknown)}")
    vars(args).update(values)
    args.pipelines = None  # the installed entry points, as for `relay`
    return args


def handled(command: Callable[[argparse.Namespace], RunEnd], args: argparse.Namespace) -> RunEnd:
    """Run a command's handler; a failure after the checks says which run to resume (a note on the error)."""
    try:
        return command(args)
    except InputError:  # checked before anything was written: nothing to resume
        raise
    except RelayError as exc:
        exc.add_note(f"Relay run {args.run_id}: finish it with relay.resume({args.run_id!r})")
        raise


def run_result(end: RunEnd) -> RunResult:
    """The ``RunResult`` of a run that returned, from its record in its store."""
    store, run_id = end.store, end.run_id
    spec, config = read_run_record(store, run_id, installed_pipelines())
    tracking = config.tracking
    return RunResult(
        run_id=run_id,
        status=str(run_records.run_status(store, run_id)),  # a plain str, as a user's yaml/pickle expects
        workspace=resolve_workspace(config.run),
        artifact_uri=store.uri,
        tracking_uri=tracking.uri,
        experiment=tracking.experiment,
        mlflow_run_id=end.mlflow_run_id,
        generations=summary_rows(spec.build(config), finished_manifests(store, run_id)),
    )


# --- reading -----------------------------------------------------------------------------


@mlflow_quieted()
def generations(
    run_id: str, workspace: PathLike | None = None, *, artifact_uri: str | None = None, experiment: str | None = None
) -> list[dict[str, Any]]:
    """`relay generations RUN_ID`: one dict per generation of every metric the run's MLflow parent run holds.

    Read from the tracking store the run's record names, as the command reads it (an MLflow run id
    of the run is taken too). ``workspace``/``artifact_uri``/``experiment``: the command's flags.
    """
    checked_reader_args(run_id, workspace, artifact_uri)
    checked_texts(experiment=experiment)
    args = command_args(
        "generations", run_id=run_id, workspace=as_flag(workspace), artifact_uri=artifact_uri, experiment=experiment
    )
    uri, chosen, _ = tracking_for(args)
    return read_generations(uri, chosen, args.run_id)[1]


@mlflow_quieted()
def runs(workspace: PathLike | None = None, *, artifact_uri: str | None = None) -> list[dict[str, Any]]:
    """`relay runs`: every run in the artifact store, newest first, as dicts of the command's columns.

    Keys: run_id, pipeline, status, generations ("done/total"), best (the headline metric's best
    value), started (ISO time, UTC) and problem (why a run's ledger cannot be read, else None).

    A workspace or artifact store named on purpose (the arguments, $RELAY_WORKSPACE, $RELAY_ARTIFACT_URI)
    that does not exist is InputError, as `relay runs` exits 2 on it: an empty list read as "no runs yet".
    """
    checked_path("workspace", workspace)
    checked_texts(artifact_uri=artifact_uri)
    args = command_args("runs", workspace=as_flag(workspace), artifact_uri=artifact_uri)
    store = store_of(args)
    run_records.check_named_store_exists(args, store)
    sweeps = sweeps_folder(workspace)
    rows = [dataclasses.asdict(row) for row in run_records.run_rows(store, installed_pipelines(), sweeps)]
    return [{**row, "status": str(row["status"])} for row in rows]  # plain str: yaml.safe_dump refuses an enum


@mlflow_quieted()
def artifact(
    run_id: str, name: str, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> pa.Table | dict[str, Any]:
    """One stored output of a run by its artifact name (``data/split``, ``g00/picks``): a pyarrow Table,
    or a checkpoint's dict (loaded on CPU), read from the artifact store wherever it is (a folder, s3://)."""
    checked_texts(name=name)
    store, dag = run_dag(run_id, workspace, artifact_uri)
    return store.load(stored_output(store, run_id, dag, name))


@mlflow_quieted()
def pseudo_labels(
    run_id: str, generation: int, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> pa.Table:
    """The pseudo-labels generation ``generation``'s model gave the unlabeled pool (artifact gNN/pseudo_labels).

    One row per unlabeled sample: sample_id, pred_class, confidence, probs (one per class), generation,
    model (docs/API.md). A generation without one (the last of a CReST run only trains and evaluates;
    Knowledge Evolution labels nothing) is bad input naming those that have one.
    """
    generation = checked_generation(generation)
    store, dag = run_dag(run_id, workspace, artifact_uri)
    name = f"g{generation:02d}/{PSEUDO_LABELS}"
    labeled = {
        stage.generation
        for stage in dag.stages
        if stage.generation is not None and f"g{stage.generation:02d}/{PSEUDO_LABELS}" in stage.outputs
    }
    if generation not in labeled:
        raise InputError(
            f"run {run_id} has no pseudo-labels of generation {generation}; generations with pseudo-labels: "
            f"{', '.join(map(str, sorted(labeled))) or 'none (its pipeline labels nothing)'}"
        )
    return store.load(stored_output(store, run_id, dag, name))


@mlflow_quieted()
def model(
    run_id: str, generation: int, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> torch.nn.Module:
    """Generation ``generation``'s trained network, on CPU in eval mode: what MLflow registers as ``gen-NN``.

    Its input is NOT raw pixels: float32 ``[N, C, H, W]`` (channels first), each pixel ``(x/255 - 0.5)/0.5``
    (``pipelines.models.to_float``: uint8 0..255 -> [-1, 1]), at ``input_shape(run_id)``'s channels and
    size, the size the run trained at. Given anything else it fails (uint8) or answers wrongly without
    a word (``x/255``, another size). It returns logits; ``predict`` gives probabilities from uint8
    images, checked and scaled as in training, and is what to use unless the network itself is needed.

    Loaded from the stored checkpoint by ``mlflow.pyfunc.load_model(...).get_raw_model()``, as MLflow
    loads the registered ``gen-NN`` (``pyfunc_model``), with the loader the run's pipeline declares: a run
    whose pipeline declares none (``PipelineSpec.pyfunc_loader``) is refused (InputError).
    """
    generation = checked_generation(generation)
    store, spec, config = run_record(run_id, workspace, artifact_uri)
    return pyfunc_model(store, run_id, spec, config, generation).get_raw_model()


@mlflow_quieted()
def predict(
    run_id: str,
    generation: int,
    images: np.ndarray | torch.Tensor,
    workspace: PathLike | None = None,
    *,
    artifact_uri: str | None = None,
) -> np.ndarray:
    """Class probabilities, float32 ``[N, classes]``, of generation ``generation``'s model for uint8 ``images``.

    ``images``: uint8 pixels 0..255, ``[N, C, H, W]`` (or ``[N, H, W]`` for one channel) at the channels
    and size of ``input_shape(run_id)``, as the run's dataset holds them; a numpy array or a torch
    tensor. They are scaled as in training (``pipelines.models.to_float``) by the model's own pyfunc
    ``predict``, so the result is what ``mlflow.pyfunc.load_model("models:/NAME@gen-NN").predict`` gives.
    Why checked here: a network with a global pool takes any size and answers wrongly at the wrong
    one, so another dtype or size is bad input (InputError naming what the run expects), not a guess.
    A run whose pipeline declares no input shape (``PipelineSpec.input_shape``) has the dtype checked
    here and the shape by its model's signature and loader; one that declares no loader is refused.
    """
    generation = checked_generation(generation)
    store, spec, config = run_record(run_id, workspace, artifact_uri)
    loader = declared_loader(spec, run_id)
    expected = trained_input_shape(run_id, spec, config) if spec.input_shape is not None else None
    batch = checked_images(images, expected, run_id)
    return pyfunc_model(store, run_id, spec, config, generation, loader).predict(batch)


@mlflow_quieted()
def input_shape(
    run_id: str, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images the run trained on, which ``predict`` and ``model`` must be given.

    What the run's pipeline says (``PipelineSpec.input_shape``); for Relay's pipelines the run's
    ``data.image_size`` when its config set it, else its dataset's own size (digits 16, CIFAR 32, an
    image folder 32), else the size a sharded dataset was imported at. A pipeline that does not say
    is refused (InputError).
    """
    _, spec, config = run_record(run_id, workspace, artifact_uri)
    return trained_input_shape(run_id, spec, config)


def trained_input_shape(run_id: str, spec: Any, config: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` the run's pipeline gives for its config (``spec.input_shape``); InputError if it says none."""
    if spec.input_shape is None:
        raise InputError(
            f"run {run_id}: its pipeline {spec.name!r} does not declare the images its models take "
            "(PipelineSpec.input_shape); read them from the signature of its logged model's MLmodel file"
        )
    try:
        return spec.input_shape(config)
    except ValueError as exc:  # data it cannot read: a sharded dataset whose manifest is gone
        raise RelayError(f"cannot tell the image size run {run_id} trained at: {exc}") from exc


def declared_loader(spec: Any, run_id: str) -> str:
    """The module the run's pipeline loads its models with (``spec.pyfunc_loader``); InputError if it declares none.

    Why refused rather than loaded with Relay's loader: another pipeline's checkpoints are not Relay's.
    """
    if spec.pyfunc_loader is None:
        raise InputError(
            f"run {run_id}: its pipeline {spec.name!r} declares no pyfunc loader (PipelineSpec.pyfunc_loader), "
            "so its models cannot be loaded as MLflow models; load the checkpoint itself with "
            f"relay.artifact({run_id!r}, NAME)"
        )
    return spec.pyfunc_loader


def checked_images(images: Any, expected: tuple[int, int, int] | None, run_id: str) -> np.ndarray:
    """``images`` as a uint8 ``[N, C, H, W]`` array when they have the run's shape; else InputError saying which.

    ``expected`` None (a pipeline that does not declare its input shape): the type and dtype are
    checked, the shape is left to the model's signature.
    """
    import numpy as np

    if not (isinstance(images, np.ndarray) or hasattr(images, "detach")):
        raise InputError(
            f"images: expected a numpy array or torch tensor of uint8 pixels [N, C, H, W], got "
            f"{type(images).__name__} {reprlib.repr(images)}; e.g. np.asarray(pixels, dtype=np.uint8)"
        )
    batch = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if expected is None:
        return checked_pixels(batch, "uint8 images [N, C, H, W]", run_id)
    channels, height, width = expected
    wanted = f"uint8 images [N, {channels}, {height}, {width}]" + (
        f" or [N, {height}, {width}]" if channels == 1 else ""
    )
    batch = checked_pixels(batch, wanted, run_id)
    if batch.ndim == 3 and channels == 1:
        batch = batch[:, None]
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        raise InputError(
            f"images: run {run_id} trained on {wanted} ({height}x{width}, {channels} channel(s)), got "
            f"{list(batch.shape)}; {_shape_fix(batch.shape, expected)}"
        )
    if batch.shape[0] == 0:  # the model's pyfunc predict raised a bare ValueError on it
        raise InputError(
            f"images: no images (got an empty batch {list(batch.shape)}); pass at least one {height}x{width} image"
        )
    return batch


def checked_pixels(batch: np.ndarray, wanted: str, run_id: str) -> np.ndarray:
    """``batch`` when it holds uint8 pixels; else InputError saying how to pass them (``wanted``: what the run takes)."""
    import numpy as np

    if batch.dtype != np.uint8:
        fix = (
            "pass the pixels as read, not scaled: predict scales them as training did"
            if np.issubdtype(batch.dtype, np.floating)
            else "convert pixels 0..255 with .astype(np.uint8)"
        )
        raise InputError(
            f"images: run {run_id}'s models take {wanted} with pixels 0..255, got dtype {batch.dtype}; {fix}"
        )
    return batch


def _shape_fix(shape: tuple[int, ...], expected: tuple[int, int, int]) -> str:
    """What to do about images of another shape: the fix differs for a flat table, channels and size."""
    channels, height, width = expected
    if tuple(shape) in ((height, width), expected):
        return "one image needs a batch axis: pass images[None]"
    if len(shape) == 4 and shape[-1] == channels and tuple(shape[1:3]) == (height, width):
        return "move the channels first (images.transpose(0, 3, 1, 2))"
    if len(shape) == 4 and tuple(shape[2:]) == (height, width):
        return f"give each image {channels} channel(s), as the run's dataset has"
    if len(shape) == 2 and shape[1] == channels * height * width:
        return f"reshape the rows to images (batch.reshape(-1, {channels}, {height}, {width}))"
    return f"resize them to {height}x{width} (channels first) before predicting"


def pyfunc_model(
    store: ArtifactStore, run_id: str, spec: Any, config: Any, generation: int, loader: str | None = None
) -> Any:
    """The generation's model as ``mlflow.pyfunc.load_model`` loads the registered ``gen-NN``: a PyFuncModel.

    The stored checkpoint goes to a temporary folder beside the MLmodel file the tracker logs with it
    (``write_mlmodel``: the same signature, and the loader of the run's pipeline, ``loader`` or else
    ``declared_loader``), so ``predict`` and ``get_raw_model`` are MLflow's public ones; the loaded
    model holds the network, not the files.
    """
    import mlflow.pyfunc

    loader = loader or declared_loader(spec, run_id)
    dag = spec.build(config)
    ref = stored_output(store, run_id, dag, generation_model(dag, run_id, generation))
    with tempfile.TemporaryDirectory(prefix="relay-model-") as folder:
        (Path(folder) / "checkpoint.pt").write_bytes(store.read_bytes(ref.path))
        write_mlmodel(Path(folder), dict(ref.meta), configured_image_size(config), loader)
        return mlflow.pyfunc.load_model(folder)


def configured_image_size(config: Any) -> int | None:
    """The config's ``data.image_size`` (the signature's size when the checkpoint records none), None without one.

    Read with getattr, as the tracker reads it: a plug-in's config need not have a ``data`` section.
    """
    return getattr(getattr(config, "data", None), "image_size", None)


def generation_model(dag: Pipeline, run_id: str, generation: int) -> str:
    """The artifact name of the generation's own model (``g01/model``), not a side branch's (``kd/model``)."""
    found = [
        output
        for stage in dag.stages
        if is_generation_stage(stage.name, generation)
        for output, kind in stage.lineage.items()
        if kind == MODEL
    ]
    if len(found) == 1:
        return found[0]
    having = sorted({s.generation for s in dag.stages if s.generation is not None and MODEL in s.lineage.values()})
    raise InputError(
        f"run {run_id} has {len(found) or 'no'} models of generation {generation}{': ' * bool(found)}"
        f"{', '.join(found)}; generations with a model: {', '.join(map(str, having)) or 'none'}"
    )


def run_dag(run_id: str, workspace: PathLike | None, store_uri: str | None) -> tuple[ArtifactStore, Pipeline]:
    """The store holding the run's record and the DAG its recorded config builds (as `relay resume` builds it)."""
    store, spec, config = run_record(run_id, workspace, store_uri)
    return store, spec.build(config)


def run_record(run_id: str, workspace: PathLike | None, store_uri: str | None) -> tuple[ArtifactStore, Any, Any]:
    """The store holding the run's record, and the pipeline spec and config that record holds."""
    checked_reader_args(run_id, workspace, store_uri)
    check_run_id(run_id)
    store = store_of(argparse.Namespace(workspace=as_flag(workspace), artifact_uri=store_uri))
    if is_trial(store, run_id):
        return store, *trial_record_in_workspace(store, run_id, workspace)
    spec, config = read_run_record(store, run_id, installed_pipelines())
    return store, spec, config


def is_trial(store: ArtifactStore, run_id: str) -> bool:
    """Whether the run is a Tune trial: a ledger and no config.yaml (a trial keeps only its ledger, as `relay runs` reads it)."""
    has = {name: store.read_record(record_path(run_id, name)) is not None for name in (CONFIG_FILE, LEDGER_FILE)}
    return has[LEDGER_FILE] and not has[CONFIG_FILE]


def trial_record_in_workspace(store: ArtifactStore, run_id: str, workspace: PathLike | None) -> tuple[Any, Any]:
    """The spec and config of a Tune trial, read from its sweep's saved config as `relay runs` reads its pipeline.

    When the sweep's folder is not in this workspace (another workspace, or `relay tune --output`),
    InputError saying what a trial keeps and where its config was looked for.
    """
    sweeps = sweeps_folder(workspace)
    found = run_records.trial_record(sweeps, run_id, installed_pipelines(), store)  # the store names an --output sweep
    if found is not None:
        return found
    where = run_records.sweep_config_of(sweeps, run_id, store) or sweeps / "SWEEP" / run_records.SWEEP_CONFIG
    raise InputError(
        f"run {run_id} is a trial of a sweep (relay tune): a trial keeps only its ledger "
        f"({store.location(record_path(run_id, LEDGER_FILE))}) and its stages' outputs, and runs its sweep's config, "
        f"looked for in {where}, which is not there; pass the workspace the sweep ran in (workspace=...). "
        f"relay.generations({run_id!r}) reads its metrics from MLflow without it"
    )


def sweeps_folder(workspace: PathLike | None) -> Path:
    """WORKSPACE/tune, where `relay tune` keeps each sweep's folder (its config, its trials)."""
    return resolve_workspace(RunSettings(workspace=as_flag(workspace))) / "tune"


def stored_output(store: ArtifactStore, run_id: str, dag: Pipeline, name: str) -> ArtifactRef:
    """Where artifact ``name`` of the run is stored: the manifest of the stage that wrote it in this run."""
    stage = dag.producer(name)  # PipelineError (bad input) naming the run's artifacts
    manifest = finished_manifest(store, readable_ledger(store, run_id).get("stages"), stage.name)
    if manifest is None:
        raise InputError(
            f"{name} of run {run_id} is not in {store.uri}: its stage {stage.name} has not finished, or its outputs "
            f"were deleted since; `relay resume {run_id}` (or resume({run_id!r})) computes it"
        )
    return manifest.outputs[name]


def finished_manifests(store: ArtifactStore, run_id: str) -> dict[str, Manifest]:
    """Stage name -> manifest of every stage the run's ledger records as done whose outputs are still stored."""
    stages = readable_ledger(store, run_id).get("stages")
    found = {name: finished_manifest(store, stages, name) for name in stages} if isinstance(stages, Mapping) else {}
    return {name: manifest for name, manifest in found.items() if manifest is not None}


def finished_manifest(store: ArtifactStore, stages: Any, name: str) -> Manifest | None:
    """The manifest of stage ``name`` when the ledger's ``stages`` record it as done and it is still stored."""
    entry = stages.get(name) if isinstance(stages, Mapping) else None
    if not isinstance(entry, Mapping) or entry.get("state") not in DONE_STATES or not entry.get("fingerprint"):
        return None
    return store.read_manifest(str(entry["fingerprint"]))


# --- the arguments' types ------------------------------------------------------------------
# Why at the edge: the CLI's parser hands its handlers strings and lists of strings, so a str where
# the API takes a list (overrides) or a str where it takes an int (generation) reached code that
# failed far from the call (a raw ValueError, or one problem per character of the string).


def checked_generation(generation: Any) -> int:
    """``generation`` as an int >= 0 (a numpy integer too); InputError naming the argument otherwise."""
    try:
        number = operator.index(generation) if not isinstance(generation, bool) else None
    except TypeError:
        number = None
    if number is None or number < 0:
        raise InputError(
            f"generation: expected an int >= 0 (0 is the first generation), got {type(generation).__name__} "
            f"{generation!r}; pass a whole number such as 0"
        )
    return number


def checked_overrides(overrides: Any) -> list[str]:
    """``overrides`` as a list of strings; a single string (a common slip) is refused naming the list to pass."""
    if isinstance(overrides, str):
        raise InputError(
            f"overrides: expected a list of 'key=value' strings, got the string {overrides!r}; pass [{overrides!r}]"
        )
    if not isinstance(overrides, Sequence) or not all(isinstance(item, str) for item in overrides):
        raise InputError(
            f"overrides: expected a list of 'key=value' strings such as ['train.steps=60'], got {overrides!r}"
        )
    return list(overrides)


def checked_path(argument: str, value: Any) -> PathLike | None:
    """``value`` when it is None, a str or a path (``pathlib.Path``); InputError naming ``argument`` otherwise."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise InputError(
            f"{argument}: expected a path (a str or pathlib.Path), got {type(value).__name__} {value!r}; "
            f"pass the folder, e.g. {argument}='relay-workspace'"
        )
    return value


def checked_config_argument(config: Any) -> None:
    """``config``: a path to a pipeline file, or the file's content as a mapping."""
    if not isinstance(config, (str, os.PathLike, Mapping)):
        raise InputError(
            f"config: expected a pipeline file's path (a str or pathlib.Path) or its content as a mapping, "
            f"got {type(config).__name__} {config!r}"
        )


def checked_texts(**values: Any) -> None:
    """Each of ``values`` (argument name -> value) None or a str; InputError naming the first that is not."""
    for argument, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"{argument}: expected a str, got {type(value).__name__} {value!r}")


def checked_flag(argument: str, value: Any) -> None:
    """A yes/no argument: a bool, never a truthy stand-in such as the string 'false' (which ran as True)."""
    if not isinstance(value, bool):
        raise InputError(f"{argument}: expected a bool (True or False), got {type(value).__name__} {value!r}")


def checked_reader_args(run_id: Any, workspace: Any, artifact_uri: Any) -> None:
    """The arguments every reader takes: a run id (a str), a workspace path, an artifact store URI."""
    if not isinstance(run_id, str):
        raise InputError(
            f"run_id: expected a Relay run id (a str such as 'smoke-20260101-120000-ab12', the RunResult's "
            f"run_id), got {type(run_id).__name__} {run_id!r}"
        )
    checked_path("workspace", workspace)
    checked_texts(artifact_uri=artifact_uri)


def as_flag(path: PathLike | None) -> str | None:
    """A path as the CLI's flags carry it (a string), None left None."""
    return None if path is None else str(path)


__all__ = [
    "InputError",
    "RelayError",
    "RunResult",
    "artifact",
    "generations",
    "input_shape",
    "model",
    "predict",
    "pseudo_labels",
    "resume",
    "run",
    "runs",
]
