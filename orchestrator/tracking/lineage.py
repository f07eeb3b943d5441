"""Lineage in MLflow: models logged and registered, datasets and teachers as run inputs.

Stages declare which outputs are models and which tables are datasets
(``Stage.lineage``); the tracker passes every finished stage's stored
artifacts here. A model is logged as an MLflow LoggedModel holding the
checkpoint as stored (state dict + plain config values), a ``config.yaml`` and
an MLmodel file whose python_function flavour loads it through the module the
pipeline's spec names (``PipelineSpec.pyfunc_loader``, so ``mlflow.pyfunc.load_model("models:/NAME@ALIAS")``
predicts; the file is written without torch, which the driver never imports)
-- no torch.export, which costs 6-12 s a model and needs an input example --
then registered under the pipeline's name; its aliases ``gen-NN`` and ``newest`` are set when the
run finishes (``registrations``). A dataset is logged as an input of the run that reads it, with
its storage location as source, Relay's own digest and its Arrow schema
(read from the Parquet footer, never the rows). The models behind a stage's
inputs are found by following the DAG back through non-model artifacts, and told
apart by what the stage does with them: a teacher (distillation's, the labeler of
the pseudo-labels a student trains on) or the weights it starts from (``models_read``).

All functions take an MlflowClient and explicit run ids: they run on the
driver, inside the tracker's failure guard.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.engine.records import TrackedArtifact

logger = logging.getLogger(__name__)

MODEL, DATASET = "model", "dataset"
KINDS = (MODEL, DATASET)
DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest
NEWEST_ALIAS = "newest"  # MLflow reserves "latest"; `models:/<name>/latest` also resolves the newest version
TAG_ARTIFACT = "relay.artifact"
TAG_DIGEST = "relay.digest"
TAG_LOADER = "relay.pyfunc_loader"  # the module its MLmodel names ("none": no python_function flavour)
TAG_TEACHER = "relay.teacher"  # models that teach a stage: a distillation teacher, the labeler of its pseudo-labels
TAG_INIT_FROM = "relay.init_from"  # models whose weights a stage starts from (pretrained) or continues (KE)
TEACHING_ROLES = frozenset({"teacher"})  # io roles of a model read to learn from its outputs (distill, FitNets)


def relay_digest(artifact: TrackedArtifact) -> str:
    """Relay's digest of a dataset, short enough for MLflow: its first 32 hex chars (all of an xxh3-128)."""
    return artifact.digest[:DIGEST_CHARS]


GENERATION_ALIAS = re.compile(r"(?:[\w-]+-)?gen-(\d+)")  # gen-NN, or a side branch's ROLE-gen-NN


def model_alias(generation: int) -> str:
    return f"gen-{generation:02d}"


def alias_generation(alias: str) -> int | None:
    """The generation a ``gen-NN`` (or ``ROLE-gen-NN``) alias names; None for any other alias (``newest``)."""
    found = GENERATION_ALIAS.fullmatch(alias)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class ModelsRead:
    """The model artifacts behind a stage's inputs: those that teach it and those it starts from (names, sorted)."""

    teachers: tuple[str, ...] = ()
    starts: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(sorted({*self.teachers, *self.starts}))


class LineageGraph:
    """What the driver remembers of one pipeline run: artifacts, the models behind them, logged model ids."""

    def __init__(self) -> None:
        self.artifacts: dict[str, TrackedArtifact] = {}
        self.origins: dict[str, frozenset[str]] = {}
        self.model_ids: dict[str, str] = {}

    def add(self, inputs: Iterable[str], outputs: Mapping[str, TrackedArtifact]) -> None:
        """Record a finished stage: a model output is its own origin, other outputs inherit their inputs'."""
        upstream = self.models_behind(inputs)
        for name, artifact in outputs.items():
            self.artifacts[name] = artifact
            self.origins[name] = frozenset({name}) if artifact.lineage == MODEL else upstream

    def models_behind(self, inputs: Iterable[str]) -> frozenset[str]:
        """Model artifacts the inputs were made from, stopping at the first model on each path."""
        return frozenset().union(*(self.origins.get(name, frozenset()) for name in inputs))

    def models_read(self, inputs: Iterable[str], roles: Mapping[str, str] | None) -> ModelsRead:
        """The models behind a stage's inputs, told apart by what the stage does with them.

        ``roles``: input artifact -> its role in the stage's io (``teacher``, ``pretrained``,
        ``previous``...). A model read as an input of a teaching role is a teacher, and so is one
        behind a table the stage reads (the labeler of Noisy Student's pseudo-labels, of CReST's
        picks, of LwF's recorded outputs). A model read as an input of another role gives the weights
        the stage starts from (``pretrained``) or continues (KE's ``previous``, LwF's ``old_model``):
        no teacher; Knowledge Evolution has none. Why: every model behind the inputs was called a
        teacher, so KE's gen-01 and a FixMatch started from a pretext encoder read as students.
        ``roles`` None (a record without them) keeps that reading: every model is a teacher; so does an
        input the roles leave out (a plug-in's ``Stage`` that declares none): a start is only ever declared.
        """
        teachers: set[str] = set()
        starts: set[str] = set()
        for name in inputs:
            behind = self.origins.get(name, frozenset())
            role = None if roles is None else roles.get(name)
            read_as_weights = behind == {name} and role is not None and role not in TEACHING_ROLES
            (starts if read_as_weights else teachers).update(behind)
        return ModelsRead(tuple(sorted(teachers)), tuple(sorted(starts)))

    def datasets_in(self, inputs: Iterable[str]) -> list[TrackedArtifact]:
        return [self.artifacts[n] for n in inputs if n in self.artifacts and self.artifacts[n].lineage == DATASET]


# --- datasets ---------------------------------------------------------------------------------


def mlflow_schema(path: str | None) -> Any:
    """The Parquet file's Arrow schema as an MLflow schema (footer only), or None when unreadable."""
    if path is None:
        return None
    import pyarrow.parquet as pq
    from mlflow.types.schema import ColSpec, Schema

    try:
        arrow = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        logger.debug("no schema for %s: %s", path, exc)
        return None
    return Schema([ColSpec(_mlflow_type(field.type), field.name, required=not field.nullable) for field in arrow])


def _mlflow_type(arrow_type: Any) -> Any:
    """Arrow type -> MLflow column type; lists become arrays, unknown types strings."""
    import pyarrow as pa
    from mlflow.types.schema import Array, DataType

    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return Array(_mlflow_type(arrow_type.value_type))
    simple = [
        (pa.types.is_boolean, DataType.boolean),
        (pa.types.is_int64, DataType.long),
        (pa.types.is_integer, DataType.integer),
        (pa.types.is_float32, DataType.float),
        (pa.types.is_floating, DataType.double),
        (pa.types.is_binary, DataType.binary),
    ]
    return next((dtype for test, dtype in simple if test(arrow_type)), DataType.string)


def dataset_input(artifact: TrackedArtifact, context: str) -> Any:
    """An MLflow DatasetInput for a stored table: source = its location, digest = Relay's, schema = Arrow's."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # MLflow registers its local source twice and warns it is ambiguous
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(artifact.uri)
    dataset = MetaDataset(
        source, name=artifact.name, digest=relay_digest(artifact), schema=mlflow_schema(artifact.local_path)
    )
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


def log_inputs(
    client: Any, runs: Sequence[str], datasets: Sequence[TrackedArtifact], model_ids: Sequence[str], context: str
) -> None:
    """Datasets and models a stage read, as inputs of its run and of its generation's run."""
    if not datasets and not model_ids:
        return
    from mlflow.entities import LoggedModelInput

    entries = [dataset_input(artifact, context) for artifact in datasets]
    models = [LoggedModelInput(model_id) for model_id in model_ids]
    for run in runs:
        client.log_inputs(run, datasets=entries, models=models)


# --- models -----------------------------------------------------------------------------------


def checkpoint_config(artifact: TrackedArtifact) -> dict[str, Any]:
    """The plain values of a Relay checkpoint (model name, classes, channels...): what rebuilds the network.

    From the manifest, where the worker that stored the checkpoint wrote them: the driver never
    imports torch (in a Ray job's driver, loading torch after Ray aborted the process: seen).
    Manifests written before they were recorded there get an empty config.
    """
    return {k: v for k, v in artifact.meta.items() if isinstance(v, (str, int, float, bool))}


def log_model(
    client: Any,
    experiment_id: str,
    run: str,
    artifact: TrackedArtifact,
    tags: Mapping[str, str],
    image_size: int | None = None,
    pipeline: str = "",
    pyfunc_loader: str | None = None,
) -> Any:
    """Log a checkpoint as an MLflow LoggedModel of run ``run`` (no export); returns the LoggedModel.

    The signature's height and width are the size the checkpoint recorded it trained at, else
    ``image_size`` (the run's ``data.image_size``), else open (``signature_image_size``).
    ``pipeline`` (the run's name) starts the model's name: see ``logged_model_name``.
    ``pyfunc_loader``: the run's pipeline's loader module (``write_mlmodel``).
    """
    if artifact.local_path is None:
        raise FileNotFoundError(f"model {artifact.name} has no local copy to log")
    config = checkpoint_config(artifact)
    model_tags = {
        **tags,
        TAG_ARTIFACT: artifact.name,
        TAG_DIGEST: artifact.digest,
        TAG_LOADER: loader_tag(pyfunc_loader),
    }
    model = client.create_logged_model(
        experiment_id,
        name=logged_model_name(pipeline, artifact.name),
        source_run_id=run,
        params={k: str(v) for k, v in config.items()},
        tags=model_tags,
        model_type="relay-checkpoint",
    )
    with tempfile.TemporaryDirectory(prefix="relay-model-") as folder:
        shutil.copyfile(artifact.local_path, Path(folder) / "checkpoint.pt")
        about = {
            "config": config,
            "relay": {**model_tags, "stored_at": artifact.uri},
            "load": "torch.load('checkpoint.pt', weights_only=True); state_dict + the config above",
        }
        (Path(folder) / "config.yaml").write_text(yaml.safe_dump(about, sort_keys=False))
        write_mlmodel(Path(folder), config, image_size, pyfunc_loader)
        client.log_model_artifacts(model.model_id, folder)
    client.finalize_logged_model(model.model_id, "READY")
    return model


def logged_model_name(pipeline: str, artifact_name: str) -> str:
    """``crest-digits-g00-model``: the pipeline's name before the artifact's, in characters MLflow accepts.

    Why: every pipeline's models were named ``g00-model``, ``g01-model``, so the experiment's
    model list could not tell CReST's from Noisy Student's. Only the name changes: ``same_model``
    and ``logged_models_of`` find models by their tags (artifact, digest, run), never by name.
    """
    name = f"{pipeline}-{artifact_name}" if pipeline else artifact_name
    return re.sub(r"[/:.%\"']", "-", name)


def write_mlmodel(folder: Path, config: Mapping[str, Any], image_size: int | None, pyfunc_loader: str | None) -> None:
    """An MLmodel file in ``folder``: pyfunc loads ``checkpoint.pt`` with ``pyfunc_loader``; uint8 [N, C, H, W] in.

    ``pyfunc_loader`` is the run's pipeline's (``PipelineSpec.pyfunc_loader``), a module name, not
    imported here: it imports torch. None (a pipeline that declares none) writes the signature alone,
    no python_function flavour, so MLflow says the model cannot be loaded rather than load it with
    another pipeline's code.
    """
    import numpy as np
    from mlflow.models import Model, ModelSignature
    from mlflow.pyfunc import add_to_model
    from mlflow.types.schema import Schema, TensorSpec

    height, width = signature_image_size(config, image_size)
    inputs = TensorSpec(np.dtype(np.uint8), (-1, int(config.get("in_channels", -1)), height, width))
    outputs = TensorSpec(np.dtype(np.float32), (-1, int(config.get("num_classes", -1))))
    model = Model(signature=ModelSignature(Schema([inputs]), Schema([outputs])))
    if pyfunc_loader is not None:
        add_to_model(model, loader_module=pyfunc_loader, data="checkpoint.pt")
    model.save(str(folder / "MLmodel"))


def signature_image_size(config: Mapping[str, Any], image_size: int | None) -> tuple[int, int]:
    """``(H, W)`` of the signature: the size the checkpoint says it trained at, else ``image_size``, else open (-1).

    Why the checkpoint first: most configs leave ``data.image_size`` unset (the dataset's own size),
    and an open size let pyfunc answer 32x32 or 8x8 images of a 16x16 model without an error.
    """
    if "image_height" in config and "image_width" in config:
        return int(config["image_height"]), int(config["image_width"])
    side = image_size or -1
    return side, side


def link_outputs(client: Any, runs: Sequence[str], model_id: str, step: int) -> None:
    """Show the model as an output of each of ``runs`` that does not show it yet.

    Why checked first: MLflow keeps one output row per (run, model) and refuses a second with a
    UNIQUE constraint error. A resumed run whose stage was redone made the same bytes again
    (``same_model`` found them), which its generation run and parent already had as an output, and the
    refusal skipped the rest of that stage's tracking, its registering included.
    """
    from mlflow.entities import LoggedModelOutput

    for run in runs:
        if model_id not in output_model_ids(client, run):
            client.log_outputs(run, [LoggedModelOutput(model_id, step)])


def output_model_ids(client: Any, run: str) -> set[str]:
    """The LoggedModels run ``run`` already lists as its outputs."""
    outputs = client.get_run(run).outputs
    return {output.model_id for output in (getattr(outputs, "model_outputs", None) or [])}


def register(client: Any, name: str, model: Any, run: str, tags: Mapping[str, str] | None = None) -> str:
    """A new version of registered model ``name`` from a LoggedModel; its aliases move when the run finishes
    (``registrations.RunRegistrations.point_aliases``).

    ``tags`` go on the version (the pipeline run and generation that made it), so a version found by
    an alias leads back to its run without opening the stage run it names.

    The source is the model's artifact location, not ``models:/<id>``: MLflow
    resolves that URI through the process-global tracking URI, which is not
    the store this client writes to.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Models of Relay pipeline runs; aliases gen-NN and newest")
    version = client.create_model_version(
        name,
        source=model.artifact_location,
        run_id=run,
        tags=dict(tags or {}),
        model_id=model.model_id,
        await_creation_for=0,
    )
    _link_version(client, model.model_id, name, version.version)
    return str(version.version)


def repoint_aliases(client: Any, name: str, wanted: Mapping[str, str]) -> list[str]:
    """Move each alias of registered model ``name`` onto the version ``wanted`` names; returns those moved, sorted.

    Why: a run resumed after another run of the same pipeline registered only the generations it had
    left, so ``gen-00`` stayed on the other run's version while ``gen-01`` and ``newest`` named this
    run's. Aliases already on their version are left as they are.
    """
    current = client.get_registered_model(name).aliases
    moved = sorted(alias for alias, version in wanted.items() if str(current.get(alias)) != str(version))
    for alias in moved:
        client.set_registered_model_alias(name, alias, wanted[alias])
    return moved


def drop_aliases_beyond(client: Any, name: str, last_generation: int) -> list[str]:
    """Remove the ``gen-NN`` / ``ROLE-gen-NN`` aliases of registered model ``name`` above ``last_generation``.

    Why: a run of 2 generations after one of 3 left ``gen-02`` on the older run's version, so
    ``@gen-01`` and ``@gen-02`` named models of unrelated runs. Called once a run has registered
    all its generations; returns the aliases removed, sorted.
    """
    aliases = client.get_registered_model(name).aliases
    stale = sorted(a for a in aliases if (alias_generation(a) or 0) > last_generation)
    for alias in stale:
        client.delete_registered_model_alias(name, alias)
    return stale


def drop_branch_aliases(client: Any, name: str, kept: Collection[str]) -> list[str]:
    """Remove the side branches' ``ROLE-gen-NN`` aliases of registered model ``name`` not in ``kept``.

    Why: a run whose config has no such branch (``ke.compute_matched_baseline=false``) left
    ``baseline-gen-01`` on an older run's version beside this run's ``gen-01``, so the aliases named
    models of two runs. Called once a run has registered all its models, with the aliases it
    registered; returns the aliases removed, sorted.
    """
    aliases = client.get_registered_model(name).aliases
    stale = sorted(a for a in aliases if is_branch_alias(a) and a not in kept)
    for alias in stale:
        client.delete_registered_model_alias(name, alias)
    return stale


def is_branch_alias(alias: str) -> bool:
    """A side branch's ``ROLE-gen-NN`` (``kd-gen-01``), not a generation's own ``gen-NN`` nor ``newest``."""
    generation = alias_generation(alias)
    return generation is not None and alias != model_alias(generation)


def same_model(client: Any, experiment_id: str, artifact: TrackedArtifact, pyfunc_loader: str | None) -> Any:
    """A READY LoggedModel of the experiment holding ``artifact``'s bytes (same name and digest) and
    loaded by ``pyfunc_loader`` (the run's pipeline's), or None.

    Why: a rerun whose stages hit the cache logged every model again, a second copy of the same
    weights (100 MB a ResNet-50), and registered it as a new version; it is now linked and its
    version's aliases moved. The loader must match too: the same bytes made by a pipeline with
    another loader (a plug-in's, or none) gave a registered version an MLmodel that the run's own
    pipeline does not load with (`models:/smoke@gen-00` then needed the plug-in installed). A model
    logged before the loader was tagged matches none, so it is logged once more. The one with the
    newest version registered under any name comes first.
    """
    query = (
        f"tags.`{TAG_DIGEST}` = '{artifact.digest}' and tags.`{TAG_ARTIFACT}` = '{artifact.name}'"
        f" and tags.`{TAG_LOADER}` = '{loader_tag(pyfunc_loader)}'"
    )
    found = [m for m in client.search_logged_models([experiment_id], filter_string=query) if str(m.status) == "READY"]
    found.sort(key=lambda m: max((int(v.get("version", 0)) for v in registered_versions(m)), default=0), reverse=True)
    return found[0] if found else None


def loader_tag(pyfunc_loader: str | None) -> str:
    """The ``TAG_LOADER`` value of a model logged with ``pyfunc_loader`` (MLflow tags take no None)."""
    return pyfunc_loader or "none"


def _link_version(client: Any, model_id: str, name: str, version: Any) -> None:
    """Name the registered version on the logged model, where the UI's "Registered models" column reads it.

    An MLflow server does this itself when it creates a version from a logged model; a client
    writing straight to a database store does not, so it is done here unless already there.
    """
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    linked = registered_versions(client.get_logged_model(model_id))
    if all((entry.get("name"), str(entry.get("version"))) != (name, str(version)) for entry in linked):
        linked.append({"name": name, "version": version})
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)})


def registered_versions(model: Any) -> list[dict[str, Any]]:
    """The registry versions a LoggedModel was registered as (the tag ``register`` writes)."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    return json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")


def logged_models_of(client: Any, experiment_id: str, pipeline_run: str, tag_run: str) -> dict[str, str]:
    """Artifact name -> model id of the models an earlier attempt of this pipeline run logged."""
    found = client.search_logged_models([experiment_id], filter_string=f"tags.`{tag_run}` = '{pipeline_run}'")
    return {m.tags[TAG_ARTIFACT]: m.model_id for m in found if TAG_ARTIFACT in m.tags}
