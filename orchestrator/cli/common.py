"""What the command groups share: finding pipelines, resolving a config file, a run's record, common flags.

The CLI names no algorithm: pipelines come from the ``relay.pipelines`` entry points
(``orchestrator.registry.load_pipelines``, through ``installed_pipelines``) unless the caller hands
``main`` its own mapping.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import re
import secrets
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.config_checks import checked_config, data_problems, dotted_value
from orchestrator.cli.preflight import folder_problem, location_problems, open_store
from orchestrator.cli.run_locations import local_path, store_problem
from orchestrator.config import (
    ARTIFACT_URI_ENV,
    WORKSPACE_ENV,
    RunSettings,
    apply_overrides,
    artifact_uri,
    load_yaml,
    validate_config,
)
from orchestrator.config.values import ray_address_problem
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore, store_fault
from orchestrator.engine.fingerprint import code_versions
from orchestrator.engine.ledger import (
    COMMAND_FILE,
    CONFIG_FILE,
    RunStatus,
    done_in,
    read_command_record,
    read_ledger,
    record_path,
    this_driver,
)
from orchestrator.engine.signals import EXIT_INTERRUPTED as EXIT_INTERRUPTED  # the code `relay` ends with on Ctrl-C
from orchestrator.errors import ConfigError, RelayError
from orchestrator.registry import LoadedPipelines, PipelineSpec, get_pipeline, load_pipelines
from orchestrator.yaml_input import yaml_mapping

Pipelines = Mapping[str, PipelineSpec]
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
ON_THE_COMMAND_LINE = "set on the command line"  # where `relay`'s `key=value` overrides come from, for a problem
BY_OVERRIDES = "set by overrides"  # where the Python API's come from (``relay.run(..., overrides=[...])``)


def pipelines_of(args: argparse.Namespace) -> Pipelines:
    """The pipelines ``main`` was given, else every one the installed entry points declare (``installed_pipelines``)."""
    given = getattr(args, "pipelines", None)
    return given if given is not None else installed_pipelines()


_WIRED: dict[str, tuple[LoadedPipelines, LoadedPipelines]] = {}  # "last": (what load_pipelines gave, it wired)
# Pipeline name -> (its wired spec, the info line saying so), for the last load: said when a file picks it.
_WIRING_LINES: dict[str, tuple[PipelineSpec, str]] = {}


def installed_pipelines() -> LoadedPipelines:
    """Every pipeline the installed entry points declare, a plug-in's given the wiring of the data section it reads.

    ``load_pipelines``, with each spec through ``wiring_of``; worked out once per load (a test that
    clears ``load_pipelines``'s cache gets its new plug-ins wired too). The info line saying what a spec
    was given is kept for ``say_wiring``, not logged here: every command loads the pipelines, and the
    line was printed by `relay runs`, `relay generations` and `relay diff` too.
    """
    loaded = load_pipelines()
    last = _WIRED.get("last")
    if last is None or last[0] is not loaded:
        _WIRING_LINES.clear()
        wired = {}
        for name, spec in loaded.items():
            wired[name], line = wiring_of(spec, loaded)
            if line:
                _WIRING_LINES[name] = (wired[name], line)
        last = _WIRED["last"] = (loaded, LoadedPipelines(wired, loaded.rejected, loaded.unloadable))
    return last[1]


def say_wiring(spec: PipelineSpec) -> None:
    """Log, once per load, what ``spec`` was given of another pipeline's wiring, where a file of it is checked.

    Only for the spec ``installed_pipelines`` wired (a caller's own mapping is not wired): `relay validate`,
    `run`, `tune` and `submit` say it, as the config they check is the one it matters to.
    """
    kept = _WIRING_LINES.get(spec.name)
    if kept is not None and kept[0] is spec:
        del _WIRING_LINES[spec.name]
        logging.getLogger("relay").info("%s", kept[1])


def wiring_of(spec: PipelineSpec, pipelines: Pipelines) -> tuple[PipelineSpec, str | None]:
    """``spec``, given the ``data``, ``pyfunc_loader`` and ``input_shape`` of the pipelines whose data section its own
    derives from, and the info line saying so (None: left as it is).

    Only for a spec that leaves ``data`` unset and whose config model's ``data`` field is a subclass of
    the data section of pipelines that carry a ``DataSpec`` (Relay's: ``DataSection``), all with the same
    wiring; a ``pyfunc_loader`` or ``input_shape`` the spec sets is kept. Why: Relay's own specs are given
    these where they are registered, and a plug-in's spec written as the checklist says had none, so a
    dataset imported again at the same ``data.uri`` met the old data's cached stages (nothing pinned its
    content) and its registered models had no python_function flavour. Matched by the data section, not
    by name: the engine names no pipeline, and a spec reading those datasets is read by that code.
    """
    section = data_section(spec.config_model)
    if spec.data is not None or section is None:
        return spec, None
    donors: dict[tuple[int, str | None, int], PipelineSpec] = {}  # one per distinct wiring, the first by name
    for name in sorted(pipelines):
        if reads_a_base_of(section, pipelines[name]):
            other = pipelines[name]
            donors.setdefault((id(other.data), other.pyfunc_loader, id(other.input_shape)), other)
    if len(donors) != 1:  # none, or pipelines with other wiring on that section: nothing to take for granted
        return spec, None
    (donor,) = donors.values()
    wired = dataclasses.replace(
        spec,
        data=donor.data,
        pyfunc_loader=spec.pyfunc_loader or donor.pyfunc_loader,
        input_shape=spec.input_shape or donor.input_shape,
    )
    line = (
        f"pipeline {spec.name!r} sets no PipelineSpec.data and reads the data section "
        f"{section.__module__}.{section.__qualname__}, as pipeline {donor.name!r} does: it gets that pipeline's "
        f"data handling (datasets pinned by content), model loader {wired.pyfunc_loader} and input shape; set "
        "them on its spec to choose others"
    )
    return wired, line


def reads_a_base_of(section: type, other: PipelineSpec) -> bool:
    """Whether ``other`` carries a ``DataSpec`` and its config's data section is ``section`` or a base of it."""
    theirs = data_section(other.config_model)
    return other.data is not None and theirs is not None and issubclass(section, theirs)


def data_section(config_model: Any) -> type | None:
    """The class of a config model's ``data`` field (``DataSection`` for Relay's pipelines), or None."""
    field = getattr(config_model, "model_fields", {}).get("data")
    annotation = getattr(field, "annotation", None)
    return annotation if isinstance(annotation, type) else None


def overrides_origin(args: argparse.Namespace) -> str:
    """How a problem names where ``args.overrides`` came from: the command line, unless the caller (the Python
    API, which has none) set ``args.overrides_origin``."""
    return getattr(args, "overrides_origin", ON_THE_COMMAND_LINE)


def load_pipeline_config(
    path: str,
    overrides: list[str],
    pipelines: Pipelines | None = None,
    local: bool = True,
    origin: str = ON_THE_COMMAND_LINE,
) -> tuple[Any, Any]:
    """The pipeline spec and checked config of a file (``load_pipeline_file`` without the file itself)."""
    spec, config, _ = load_pipeline_file(path, overrides, pipelines, local, origin)
    return spec, config


def load_pipeline_file(
    path: str,
    overrides: list[str],
    pipelines: Pipelines | None = None,
    local: bool = True,
    origin: str = ON_THE_COMMAND_LINE,
) -> tuple[Any, Any, dict[str, Any]]:
    """YAML -> dict -> dotted overrides -> validated config -> preflight; every problem raised at once.

    The preflight covers the data (the pipeline's own check) and where a run would write
    (workspace, artifact store, tracking database); ``local`` False checks only what does not
    depend on this machine's folders (``relay submit``: they are the cluster's; data in a folder this
    machine lacks is left to the job, which checks and pins it before it writes). Returns the spec,
    the config and the file with the overrides applied, both with what the config names by
    location pinned by content (a sharded dataset's digest: ``DataSpec.pins``), so the stage
    cache tells datasets apart; `relay tune` builds its trials from the file. ``origin``: how a
    problem names where the overrides came from (``from_override``).
    """
    data = apply_overrides(load_yaml(path), overrides)
    pipelines = installed_pipelines() if pipelines is None else pipelines
    spec = get_pipeline(data.get("pipeline"), pipelines, source=path, overrides=overrides, origin=origin)
    try:
        data, config, elsewhere = checked_config(spec, path, data, local)
    except ConfigError as exc:  # each problem names the override that set its key: the file is the heading
        raise overridden(exc.problems, overrides, path, origin) from exc
    say_wiring(spec)
    pins = spec.data.pins(config) if spec.data is not None and not elsewhere else {}
    if not pins:
        return spec, config, data
    pinned = apply_overrides(data, pins)
    return spec, validate_config(spec.config_model, pinned, source=path), pinned


def overridden(problems: list[str], overrides: list[str], path: str, origin: str = ON_THE_COMMAND_LINE) -> ConfigError:
    """The error of ``problems`` in file ``path``, each naming the override that set its key (``from_override``)."""
    return ConfigError([from_override(problem, overrides, origin) for problem in problems], path)


def from_override(problem: str, overrides: list[str], origin: str = ON_THE_COMMAND_LINE) -> str:
    """``problem``, with the overrides that set its key, or a key it names, named: the message is headed by the file.

    ``origin`` says where they came from: ``ON_THE_COMMAND_LINE`` for `relay`, ``BY_OVERRIDES`` for the
    Python API, whose caller typed no command line.

    Why: `relay run smoke.yaml train=5` said the problem was "in smoke.yaml", where the user finds no such line;
    and a problem comparing two keys (`train.warmup_steps: ... than train.steps (20)`) whose own key the file
    set came from the override of the other (`train.steps=20`), and named none.
    """
    key = _problem_key(problem)
    keys = [(item, item.partition("=")[0].strip()) for item in overrides]
    # the override sets the key, a list item of it, or a section above it: the last such one counted
    above = {item for item, given in keys if given and (key == given or key.startswith((f"{given}.", f"{given}[")))}
    inside = [item for item, given in keys if given.startswith(f"{key}.")]  # inside the section the problem is about
    setting = [item for item, _ in keys if item in above or item in inside]
    # A section's problem (`resources: ... resources.filter ...`) may come from any override inside the
    # section: those whose keys it names are the ones; failing that, all of them, not a guess at one.
    named = [item for item, given in keys if item in inside and _named_in(given, key, problem)]
    # no override set the key: those of the keys the message names (`than train.steps (20)`) caused it
    chosen = named or (setting if inside else setting[-1:]) or _mentioned(problem, keys)
    if not chosen:
        return problem
    return f"{problem} ({origin}: {', '.join(dict.fromkeys(chosen))})"


def _named_in(given: str, key: str, problem: str) -> bool:
    """Whether a problem about section ``key`` names override key ``given`` or a section of it below ``key``
    (`resources.filter` for `resources.filter.num_cpus`)."""
    parts = given.split(".")
    depth = len(key.split("."))
    return any(".".join(parts[:n]) in problem.split(":", 1)[-1] for n in range(depth + 1, len(parts) + 1))


def _problem_key(problem: str) -> str:
    """The key a problem is about: its heading (`train.steps` of `train.steps: must be > 0`), or the dotted key
    it starts with where it has none (`lwf.old_classes` of `lwf.old_classes [5, 6] and data.classes ... share`)."""
    head = problem.split(":", 1)[0]
    leading = re.match(r"([A-Za-z_]\w*(?:\.\w+)+) ", problem)
    return leading.group(1) if " " in head and leading else head


def _mentioned(problem: str, keys: list[tuple[str, str]]) -> list[str]:
    """The last override of each dotted key the problem names as a whole (`train.steps`, not the
    `tune.space.train.steps` entry, nor a file's quoted key `'train.steps'`)."""
    last = {given: item for item, given in keys if "." in given}
    return [item for given, item in last.items() if re.search(rf"(?<![\w.']){re.escape(given)}(?![\w'])", problem)]


def load_saved_config(text: str, source: str, pipelines: Pipelines) -> tuple[Any, Any]:
    """The pipeline spec and validated config of a run, from the config.yaml saved when it started."""
    data = yaml_mapping(text, source)
    spec = get_pipeline(data.get("pipeline"), pipelines, source=source, recorded=True)
    config = validate_config(spec.config_model, data, source=source)
    problems = location_problems(config.run, config.tracking)
    if problems:
        raise ConfigError(problems, source)
    return spec, config


RESUME_DATA_FIX = "Put the data back as it was to resume, or start a new run on the data as it is now (`relay run`)"
# A preflight problem of `init.` (the `init.source` weights a run starts from) is about weights, not data.
INIT_KEYS = "init."
RESUME_WEIGHTS_FIX = (
    "Put back the weights the run was planned with to resume, or start a new run with the weights as they are "
    "now (`relay run`)"
)


def check_data_unchanged(spec: PipelineSpec, config: Any, run_id: str, source: str) -> None:
    """Refuse (exit 2) to resume a run whose data is gone or is no longer the data it started on.

    Why: `relay run` pinned what the config names by location (a folder's listing digest, a
    sharded dataset's digest: ``DataSpec.pins``), and the finished stages are cached under those
    pins. A resume reading changed data under the old pins would train the later generations on
    other images than the earlier ones, and the run's record would say they were the same.
    A pin filling a value the record left empty (a record older than that pin) is no change.
    Data the preflight refuses is said the same way (``_changed_data``): its advice is for a new
    config, which a resume, running the run's own, cannot take.
    """
    problems = [
        problem if _storage_problem(problem) else _changed_data(problem, run_id)
        for problem in data_problems(spec, config)
    ]
    if not problems and spec.data is not None:
        problems = [
            f"{key}: the data changed since run {run_id} started ({key} was {str(old)[:16]}, is now "
            f"{str(now)[:16]}); its finished stages read the old data, so resuming would mix the two. {RESUME_DATA_FIX}"
            for key, now in spec.data.pins(config).items()
            if (old := dotted_value(config, key)) is not None and old != now
        ]
    if problems:
        raise ConfigError(problems, source)


def _storage_problem(problem: str) -> bool:
    """Whether a preflight problem is the data's storage refusing or not answering: no change of the data, and
    fixed on this machine (credentials, network) before a resume, so said as the preflight says it."""
    return store_fault(ValueError(problem)) is not None or "cannot reach this storage" in problem


def _changed_data(problem: str, run_id: str) -> str:
    """A preflight problem met on resume, as what it is there: the data changed (or went) since the run started.

    The preflight's advice ("Set head_count to at most 24", "update data.digest") changes the
    config, and a resume runs the config the run started with, which passed this check then. So
    the advice, the message's last sentence (or its last clause after "; " when it has one
    sentence), is replaced by the one that applies: put the data back, or start a new run. A problem of
    `init.` is said of the weights the run starts from (`init.source`), which are not its data.
    """
    key, _, message = problem.partition(": ")
    sentence = message.rfind(". ")
    if sentence > 0 and message[sentence + 2 : sentence + 3].isupper():
        finding = message[:sentence]
    else:
        finding = message.rpartition("; ")[0] or message
    if key.startswith(INIT_KEYS):
        changed, fix = f"the weights changed since run {run_id} started, or are gone", RESUME_WEIGHTS_FIX
    else:
        changed, fix = f"the data changed since run {run_id} started, or is gone", RESUME_DATA_FIX
    return (
        f"{key}: {changed}: {finding.rstrip('.')}. "
        f"Its config passed this check when it started, and a resume cannot change it. {fix}"
    )


def store_option(store_uri: str) -> str:
    """How a printed command (`relay resume`, `relay generations`) names the run's artifact store:
    nothing where that command would open this store anyway, else `` --artifact-uri URI``."""
    return "" if store_uri == artifact_uri(RunSettings()) else f" --artifact-uri {shlex.quote(store_uri)}"


def new_run_id(name: str) -> str:
    """``NAME-DATE-TIME-XXXX``: the run's one id (Relay's run, the Ray job's submission id, the MLflow run name)."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def with_locations(config: Any, store: str, tracking: str) -> Any:
    """``config`` with its artifact store and tracking URI written in, as resolved where the run started.

    Saved so in the run record, a resume on any machine (a new head node, a laptop) writes to
    the same stores whatever its own environment says.
    """
    run = config.run.model_copy(update={"artifact_uri": store})
    return config.model_copy(update={"run": run, "tracking": config.tracking.model_copy(update={"uri": tracking})})


def moved_workspace(config: Any, store_uri: str) -> tuple[Path, Path] | None:
    """(recorded workspace, workspace now) when a run's record was found in a workspace moved as a whole.

    A relocated workspace (``relocated_workspace``) whose old place no longer holds the run's
    tracking database: the run's tracking database is NEW's. None when nothing moved, the old
    place is still there (a copy), or the stores were not the workspace's.
    """
    relocated = relocated_workspace(config, store_uri)
    if relocated is None or (relocated[0] / "mlflow.db").exists():
        return None
    return relocated


def relocated_workspace(config: Any, store_uri: str) -> tuple[Path, Path] | None:
    """(recorded workspace, workspace now) when a run's record is read in another workspace than it started in.

    The record keeps the absolute stores of where the run started (``with_locations``): the
    artifact store ``OLD/artifacts`` and, when it tracked into the workspace's own database,
    ``sqlite:///OLD/mlflow.db``. Found at ``NEW/artifacts``, the workspace was moved or copied.
    None when it is the same folder (also by another path, a symlink), or the stores were not
    the workspace's.
    """
    return relocated_stores(config.run.artifact_uri, config.tracking.uri, store_uri)


def relocated_stores(recorded: str | None, tracking: str | None, store_uri: str) -> tuple[Path, Path] | None:
    """``relocated_workspace`` of a record's artifact store ``recorded`` and tracking URI ``tracking``."""
    if not recorded or recorded == store_uri or "://" in recorded or "://" in store_uri:
        return None
    old, new = Path(recorded).parent, Path(store_uri).parent
    if Path(recorded).name != "artifacts" or Path(store_uri).name != "artifacts":
        return None
    if tracking != f"sqlite:///{old / 'mlflow.db'}":
        return None
    if old.exists() and new.exists() and os.path.samefile(old, new):
        return None
    return old, new


def tracked_in_this_workspace(store: ArtifactStore, run_id: str, tracking_store: str) -> bool:
    """Whether run ``run_id``, whose record ``store`` holds in a workspace moved or copied since it ran, tracked into
    that workspace's own database, which is ``tracking_store`` now.

    Why: its record names the database where it started (``sqlite:///OLD/mlflow.db``), and the
    readers (`relay generations`, `relay ui`) took that for another store than ``NEW/mlflow.db``:
    they said the run "was tracked in" the old one while showing that very run from the new one.
    A record that cannot be read is no such run (False).
    """
    try:
        text = store.read_record(record_path(run_id, CONFIG_FILE))
        data = yaml_mapping(text.decode(), record_path(run_id, CONFIG_FILE)) if text is not None else {}
    except (RelayError, UnicodeDecodeError):
        return False
    run, tracking = data.get("run"), data.get("tracking")
    if not isinstance(run, dict) or not isinstance(tracking, dict):
        return False
    relocated = relocated_stores(run.get("artifact_uri"), tracking.get("uri"), store.uri)
    return relocated is not None and tracking_store == f"sqlite:///{relocated[1] / 'mlflow.db'}"


def save_run_record(
    store: ArtifactStore,
    run_id: str,
    config: Any,
    config_path: str,
    overrides: list[str],
    rerun: frozenset[str] = frozenset(),
    ray_address: str | None = None,
) -> None:
    """The resolved config and the command that made it, beside the artifacts: `relay resume` reads them back.

    ``rerun``: the stages `--no-cache` / `--rerun-from` asked to compute afresh; a resume still
    computes those it had not reached instead of taking another run's cached outputs.
    ``ray_address``: the cluster the run joined as its driver when the command named it (``--address``,
    RAY_ADDRESS; ``cluster_join.address_to_record``), so that `relay resume` joins it again
    (``recorded_ray_address``) instead of finishing the run on a new local Ray instance.
    """
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    store.write_record(record_path(run_id, CONFIG_FILE), text.encode())
    driver = this_driver()  # `relay runs` tells a driver that died starting; a job's names its cluster
    command = {"config": config_path, "overrides": overrides, "rerun": sorted(rerun), "driver": driver}
    if ray_address is not None:
        command["ray_address"] = ray_address
    store.write_record(record_path(run_id, COMMAND_FILE), json.dumps(command).encode())


def recorded_ray_address(store: ArtifactStore, run_id: str) -> str | None:
    """The cluster a run's record says it joined (``save_run_record``); None: it started its own Ray, or
    its config names the cluster (``run.ray_address``), or the record is older or unreadable."""
    address = read_command_record(store, run_id).get("ray_address")
    return address if isinstance(address, str) and address else None


def rerun_on_resume(store: ArtifactStore, run_id: str) -> frozenset[str]:
    """The stages the run was asked to compute afresh that it has not computed yet (none for a plain run).

    A stage this run finished shows in its ledger as succeeded (the attempt that ran it) or
    cached (later attempts reusing it); either way it is this run's own output and is kept.
    """
    rerun = read_command_record(store, run_id).get("rerun")
    requested = {str(name) for name in rerun} if isinstance(rerun, list) else set()  # unreadable: nothing afresh
    return frozenset(requested - done_stages(store, run_id)) if requested else frozenset()


def done_stages(store: ArtifactStore, run_id: str) -> frozenset[str]:
    """The stages a run's ledger records as done (its own outputs); none when there is no readable ledger."""
    return done_in(readable_ledger(store, run_id).get("stages"))


def readable_ledger(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """The run's ledger, or an empty one when there is none or it cannot be read (the command reports that itself)."""
    try:
        ledger = read_ledger(store, run_id)
    except (ValueError, RelayError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


def check_resume_stop_after(store: ArtifactStore, run_id: str, stop_after: str | None) -> None:
    """Refuse (exit 2) `relay resume RUN --stop-after STAGE` of a run that has finished.

    Why: the resumed attempt would end at that stage and record the finished run as stopped,
    its MLflow runs KILLED. A run that has not finished may stop after a stage it has done (the
    resume checks that stage's outputs and recomputes a damaged one); the stages it did later
    stay in its ledger (``Ledger.write``).
    """
    if stop_after is None or readable_ledger(store, run_id).get("status") != RunStatus.FINISHED:
        return
    raise ConfigError(
        [
            f"--stop-after: run {run_id} has finished, so stopping it after {stop_after} would record it as stopped "
            f"again; resume it without --stop-after (its outputs are checked, and a damaged one recomputed)"
        ],
        "the command line",
    )


MLFLOW_ID_HINT = (  # `relay run` prints the MLflow run id to open in the UI: a user may take it for the run's id
    "; this looks like an MLflow run id, which the tracking store here does not know: pass the Relay run id "
    "(`relay runs` lists them; in MLflow it is the run's name and its relay.pipeline_run tag)"
)


def read_run_record(store: ArtifactStore, run_id: str, pipelines: Pipelines) -> tuple[Any, Any]:
    """The spec and config a run was started with, from its record in ``store``; a missing or damaged run is bad input."""
    text = store.read_record(record_path(run_id, CONFIG_FILE))
    if text is None:
        raise ConfigError(
            [
                f"run_id: no run {run_id!r} in the artifact store {store.uri}; list its runs with "
                f"`relay runs --artifact-uri {store.uri}`, "
                "or pass the store the run wrote to (--workspace, --artifact-uri or RELAY_ARTIFACT_URI)"
                + MLFLOW_ID_HINT
                * bool(re.fullmatch(r"[0-9a-f]{32}", run_id))
            ],
            "the command line",
        )
    source = store.location(record_path(run_id, CONFIG_FILE))
    try:
        decoded = text.decode()
    except UnicodeDecodeError as exc:  # `relay run` writes YAML as UTF-8: this file was edited or damaged since
        raise ConfigError(
            [
                f"not UTF-8 text (byte {exc.start}: {exc.reason}), so not the config `relay run` saved; "
                "restore it, or start the run again with `relay run`"
            ],
            source,
        ) from exc
    return load_saved_config(decoded, source, pipelines)


def store_of(args: argparse.Namespace) -> ArtifactStore:
    """The artifact store a command reads run records from: --artifact-uri, else the workspace's default.

    A local store that is a file, or lies under one, is bad input: pyarrow would report "Not a
    directory" at the first read, and a listing would find no runs there and say so. So is a
    remote store that does not answer (probed for at most ``PROBE_TIMEOUT_S``, as `relay run`
    does): a listing of an unreachable S3 endpoint came back empty ("no runs yet"), and one of a
    GCS bucket hung for minutes.
    """
    given = getattr(args, "artifact_uri", None)
    uri = given or artifact_uri(RunSettings(workspace=getattr(args, "workspace", None)))
    folder = local_path(uri)
    if folder is not None and not Path(folder).expanduser().is_dir():
        problem = folder_problem(folder, _store_key(args))
        if problem:
            raise ConfigError([problem], "the command line")
    problem = store_problem(uri, key=_store_key(args)) if folder is None else None
    if problem:
        raise ConfigError([problem], "the command line")
    return open_store(uri)


def _store_key(args: argparse.Namespace) -> str:
    """How the user named the store, for messages: the flag or variable that set it."""
    if getattr(args, "artifact_uri", None):
        return "--artifact-uri"
    if os.environ.get(ARTIFACT_URI_ENV):
        return f"${ARTIFACT_URI_ENV}"
    if getattr(args, "workspace", None):
        return "--workspace"
    return f"${WORKSPACE_ENV}" if os.environ.get(WORKSPACE_ENV) else "the default workspace (./relay-workspace)"


RELAY_STAGE_PACKAGE = "pipelines"  # Relay's pipelines, whose stage helpers a plug-in's stages may import


def pipeline_code_versions(pipeline: Pipeline) -> dict[str, str]:
    """Stage module -> its code version: the module and what it imports from its own package, transitively.

    The package of each stage body is found from the body's module name (its top-level package,
    imported without the body itself, so the driver loads no torch), so a user's package is
    digested exactly like Relay's own, and an edit reruns only the stages whose code it touches.
    A plug-in's stages also digest what they import of Relay's ``pipelines`` (``shared_folders``).
    Silent: where the versions come from is said by ``log_code_versions`` once the command's input
    is accepted (`relay tune` needs the versions to check its sweep, and bad input prints only its message).
    """
    versions: dict[str, str] = {}
    for top, modules in stage_packages(pipeline).items():
        folder = package_folder(top)
        if folder is None:
            continue
        if next(folder.rglob("*.py"), None) is None:  # an empty digest would silently change every fingerprint
            raise RelayError(f"no Python files under {folder}, where {', '.join(sorted(modules))} was imported from")
        versions.update(code_versions(modules, folder, *shared_folders(top)))
    return versions


def shared_folders(top: str) -> list[Path]:
    """The folder of Relay's ``pipelines`` for a plug-in package ``top``; none for Relay's own stages.

    Why: a plug-in's stage may call Relay's stage helpers (``pipelines.stages.common.picks_of``);
    counted as environment, an upgrade that changed them reran every Relay stage and left the
    plug-in's cached. Relay's own stages already digest ``pipelines``, so theirs stay as they were.
    """
    if top == RELAY_STAGE_PACKAGE:
        return []
    folder = package_folder(RELAY_STAGE_PACKAGE)
    return [] if folder is None else [folder]


def log_code_versions(pipeline: Pipeline) -> None:
    """Say where ``pipeline_code_versions`` found each stage package's code; warn of one without a folder.

    Why a line: on a cluster the package may come from the job's upload or an installed copy, and
    the folders named here are the ones whose edits rerun cached stages (for a plug-in, Relay's
    ``pipelines`` too, where its stages import from it).
    """
    log = logging.getLogger("relay")
    for top, modules in stage_packages(pipeline).items():
        folder = package_folder(top)
        if folder is None:
            log.warning(
                "no code version for %s: package %r has no folder of its own; an edit of it will not rerun "
                "cached stages",
                ", ".join(sorted(modules)),
                top,
            )
        else:
            shared = "".join(f" and what they import under {path}" for path in shared_folders(top))
            log.info("code versions of %d stage modules under %s%s", len(modules), folder, shared)


def stage_packages(pipeline: Pipeline) -> dict[str, set[str]]:
    """Top-level package -> the modules of the pipeline's stage bodies in it, by package name."""
    by_package: dict[str, set[str]] = {}
    for stage in pipeline.stages:
        module = getattr(stage.fn, "__module__", "")
        by_package.setdefault(module.split(".")[0], set()).add(module)
    return dict(sorted(by_package.items()))


def package_folder(top: str) -> Path | None:
    """The folder of the regular package ``top``: its ``__file__``'s, else the one a finder of ``sys.meta_path`` has.

    Why the finders: a folder of that name without ``__init__.py`` earlier on the path (a
    project's own ``pipelines/configs/``, which a Ray job puts first on the path as its working
    folder) makes ``import pipelines`` a namespace package without a file, while its modules
    still load from the installed package (an editable install's finder). Its stages then got
    no code version, silently, and a cluster run's cache ignored edits of their code.
    """
    package = importlib.import_module(top)
    if getattr(package, "__file__", None):
        return Path(package.__file__).parent
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(top, None) if find_spec is not None else None
        if spec is not None and spec.has_location and spec.origin:
            return Path(spec.origin).parent
    return None


def cluster_address(address: str | None) -> str | None:
    """``--address`` as ray.init takes it (HOST:PORT), checked for form; a dashboard URL is refused.

    Whether a cluster answers there is checked with the run's other settings
    (``cluster_fit.check_cluster``).
    """
    if address is None:
        return None
    problem = ray_address_problem(address, "--address")
    if problem:
        raise ConfigError([problem], "the command line")
    return address


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default: $RELAY_WORKSPACE or ./relay-workspace)")


def add_location_overrides(parser: argparse.ArgumentParser) -> None:
    """``--workspace`` / ``--artifact-uri`` on a command that reads a pipeline file: the overrides ``run.workspace=``
    / ``run.artifact_uri=`` under the names the other commands give them (``locations_as_overrides``).

    Why: `relay resume`, `relay runs`, `relay generations` and `relay submit` take these flags, and `relay run`
    ends by printing them; `relay run CONFIG --workspace DIR` was an unrecognised argument.
    """
    parser.add_argument("--workspace", help="the workspace folder: the same as the override run.workspace=DIR")
    parser.add_argument(
        "--artifact-uri", help="the artifact store (s3://BUCKET/PREFIX or a folder): the same as run.artifact_uri=URI"
    )
    parser.set_defaults(locations_as_overrides=True)


def locations_as_overrides(args: argparse.Namespace) -> None:
    """Add ``--workspace`` / ``--artifact-uri`` to ``args.overrides`` as the config keys they stand for (last: they
    win over the file, as any override does, and a problem with them names the override)."""
    flags = (("run.workspace", args.workspace), ("run.artifact_uri", args.artifact_uri))
    args.overrides = [*args.overrides, *(f"{key}={value}" for key, value in flags if value is not None)]


def add_artifact_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifact-uri",
        help="artifact store holding the run records, e.g. s3://BUCKET/PREFIX "
        "(default: $RELAY_ARTIFACT_URI, else the workspace's artifacts/)",
    )


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray dashboard address, e.g. http://HOST:8265 (default: $RAY_ADDRESS)")


def add_cluster_address(parser: argparse.ArgumentParser, resume: bool = False) -> None:
    default = (
        "default: the cluster the run joined (its record, or run.ray_address), else $RAY_ADDRESS, else a new local Ray "
        "instance; `local` starts one whatever the record says"
        if resume
        else "default: run.ray_address, else $RAY_ADDRESS (set inside a Ray job), else a new local Ray instance of its own"
    )
    parser.add_argument(
        "--address",
        help=f"join this Ray cluster as its driver (the GCS address HOST:6379, as `ray status` prints it); {default}",
    )
