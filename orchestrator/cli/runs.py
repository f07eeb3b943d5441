"""`relay runs`: the artifact store's pipeline runs, read from their run records and ledgers (not MLflow).

Each run record (``runs/RUN_ID/`` in the artifact store, docs/CONTRACTS.md, Workspace) holds
the resolved config and the ledger the runner rewrites after every stage, so the list needs no
tracking server and works for a run whose MLflow writes failed, from any machine that sees the
store. A Tune trial keeps only a ledger; its pipeline is read from the config its sweep saved
(WORKSPACE/tune/SWEEP/sweep-config.yaml). A ledger that still says RUNNING while its driver (same
host, pid gone) has died is shown as INTERRUPTED, with `relay resume` as the way on. `--status`,
`--pipeline` and `--last` pick rows of a workspace of many runs, and `--overrides` tells runs of one
pipeline apart by what each was started with; without them the table is as it always was.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from orchestrator.cli.common import (
    Pipelines,
    _store_key,
    add_artifact_uri,
    add_workspace,
    pipelines_of,
    store_of,
    store_option,
)
from orchestrator.cli.preflight import tracking_uri_problem
from orchestrator.cli.run_locations import local_path, tracking_problem
from orchestrator.cli.run_record import tracked_in_this_workspace
from orchestrator.cli.tune import SWEEP_CONFIG
from orchestrator.config import (
    ARTIFACT_URI_ENV,
    TRACKING_URI_ENV,
    WORKSPACE_ENV,
    RunSettings,
    TrackingSettings,
    apply_overrides,
    resolve_workspace,
    tracking_uri,
    validate_config,
)
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import (
    COMMAND_FILE,
    CONFIG_FILE,
    DONE_STATES,
    LEDGER_FILE,
    RUNS,
    RunStatus,
    StageState,
    read_command_record,
    read_ledger,
    record_path,
    tracking_lost_at,
)
from orchestrator.errors import ArtifactError, ConfigError, InputError, RelayError
from orchestrator.registry import PipelineSpec, get_pipeline
from orchestrator.tracking.common import sqlite_path
from orchestrator.tracking.pipeline_run import START
from orchestrator.tracking.report import text_table
from orchestrator.tune.plan import SWEEP_RECORD
from orchestrator.yaml_input import yaml_mapping

TRIALS_JSON = "trials.json"  # a finished sweep's trials (`relay tune` writes it beside its config): each one's values
HEADERS = ["run", "pipeline", "status", "generations", "best", "started"]
# The errors (class names, as the ledger records a failed stage's) of data that cannot be read: fixing it changes
# the data, which a resume refuses, so the way on is a new run (orchestrator.errors.UnreadableDataError).
UNREADABLE_DATA_ERRORS = ("UnreadableDataError", "UnreadableImageError")
# `init.source` weights changed after the run was planned: its error says both ways on, put them back and resume
# or start a new run for the new ones (orchestrator.errors.ChangedWeightsError).
CHANGED_WEIGHTS_ERROR = "ChangedWeightsError"
OVERRIDES_WIDTH = 60  # characters of a run's overrides `relay runs --overrides` shows; longer ones end in "..."
INCOMPLETE_MARK = "*"  # after the status of a run whose MLflow record is incomplete; the line under the table says so
RUN_ID_TIME = re.compile(r"-(\d{8}-\d{6})-[0-9a-f]{4}$")  # the time in a run id `relay run` made (new_run_id)


@dataclass(frozen=True)
class RunRow:
    """One line of `relay runs`."""

    run_id: str
    pipeline: str
    status: RunStatus
    generations: str  # "done/total"
    best: str  # "balanced_accuracy 0.5600 (g01)" or "-"
    started: str  # the ledger's ISO time (UTC), "" before the runner started
    problem: str | None = None  # why the ledger cannot be read (status UNREADABLE): printed below the table
    name: str = ""  # the config's `name` (the ledger's `pipeline`), which `--pipeline` also matches
    tracking_lost_at: str | None = None  # where the tracking store stopped answering: its MLflow record is incomplete

    def cells(self) -> list[str]:
        status = self.status + (INCOMPLETE_MARK if self.tracking_lost_at is not None else "")
        return [self.run_id, self.pipeline, status, self.generations, self.best, _local_time(self.started)]


def run_rows(store: ArtifactStore, pipelines: Pipelines, sweeps: Path | None = None) -> list[RunRow]:
    """Every run recorded in the store (a config, a ledger or both), newest first.

    ``sweeps``: the folder of `relay tune`'s sweep folders (WORKSPACE/tune), where a trial's pipeline is found.
    """
    rows = [_row(store, run_id, pipelines, sweeps) for run_id in run_ids(store)]
    return sorted(rows, key=lambda row: (row.started, row.run_id), reverse=True)


def run_ids(store: ArtifactStore) -> set[str]:
    """The ids of ``runs/RUN_ID/`` holding a config (a `relay run`) or a ledger (a Tune trial keeps only that)."""
    found = store.newest_records(RUNS, CONFIG_FILE) + store.newest_records(RUNS, LEDGER_FILE)
    return {parts[1] for parts in (relative.split("/") for relative in found) if len(parts) == 3}


class _Driver(BaseModel):
    host: str = ""
    pid: int = 0


class _Stage(BaseModel):
    generation: int | None = None
    state: str = ""
    metrics: dict[str, float] = {}
    error: Any = None  # why the stage failed, as the runner wrote it (any type: shown, never parsed)


class LedgerView(BaseModel):
    """What `relay runs` reads of a ledger (engine/ledger.py writes it), checked for type.

    A ledger is a file anyone can edit or truncate; a value of the wrong type (a pid "abc", a
    metric "n/a") makes the record unreadable, not the command.
    """

    pipeline: str = "?"
    status: RunStatus | None = None
    generations: dict[int, int] = {}
    started: str = ""
    stop_after: str | None = None
    driver: _Driver | None = None
    stages: dict[str, _Stage] = {}


@dataclass(frozen=True)
class LedgerRead:
    """A run's ledger as read: the view (None when there is none yet) or why it cannot be read."""

    view: LedgerView | None = None
    problem: str | None = None


def _row(store: ArtifactStore, run_id: str, pipelines: Pipelines, sweeps: Path | None) -> RunRow:
    """The run's line; an unreadable ledger still gets one, so the list shows every run."""
    read = read_view(store, run_id)
    own_kind = pipeline_kind(store, run_id)  # None for a Tune trial: its sweep keeps its config
    kind = own_kind or _trial_kind(sweeps, run_id, store)
    if read.problem is not None:
        return RunRow(run_id, kind or "?", RunStatus.UNREADABLE, "-", "-", "", problem=read.problem)
    ledger = read.view or LedgerView()
    spec = pipelines.get(kind) if kind else None
    reported = _reported_generation(ledger) if own_kind is None else None
    return RunRow(
        run_id=run_id,
        pipeline=kind or ledger.pipeline,
        status=_status(ledger),
        generations=_generations(ledger.generations, ledger.stages, reported),
        best=_best(_headline(spec), _results(ledger.stages, spec)),
        started=ledger.started,
        name=ledger.pipeline,
        tracking_lost_at=tracking_lost_at(store, run_id),
    )


def _headline(spec: PipelineSpec | None) -> str | None:
    """The pipeline's first single summary metric (PipelineSpec.summary), None without a spec."""
    return next((m for m in (spec.summary.values() if spec else ()) if not m.endswith("/*")), None)


def _results(stages: Mapping[str, _Stage], spec: PipelineSpec | None) -> dict[str, _Stage]:
    """The stages whose metrics are the pipeline's results: not those of its reference generations (a teacher)."""
    skipped = spec.reference_generations if spec else frozenset()
    return {name: stage for name, stage in stages.items() if stage.generation not in skipped}


def read_view(store: ArtifactStore, run_id: str) -> LedgerRead:
    """The run's ledger, or why it cannot be read (one bad record spoils no list)."""
    relative = record_path(run_id, LEDGER_FILE)
    try:
        data = read_ledger(store, run_id)
        if data is not None and not isinstance(data, dict):
            return LedgerRead(problem=f"{relative}: expected a JSON object, got a {type(data).__name__}")
        return LedgerRead(_starting(store, run_id) if data is None else LedgerView.model_validate(data))
    except ArtifactError as exc:
        return LedgerRead(problem=str(exc))
    except ValueError as exc:  # pydantic's ValidationError and UnicodeDecodeError are ValueErrors
        return LedgerRead(problem=f"{relative}: {_first_error(exc)}")


def _starting(store: ArtifactStore, run_id: str) -> LedgerView | None:
    """A run without a ledger yet (its driver starts Ray before the first write): the driver its command
    record names, so that one that died starting reads INTERRUPTED, not NOT STARTED for ever, and when
    that record was written as its start (``created``)."""
    try:
        command = read_command_record(store, run_id)
        driver = _Driver.model_validate(command["driver"]) if "driver" in command else None
    except (ArtifactError, ValueError):
        return None
    return None if driver is None else LedgerView(driver=driver, started=created(store, run_id))


def created(store: ArtifactStore, run_id: str) -> str:
    """When the run's command record was written (the run's start, ISO UTC as a ledger's), "" when unknown.

    Why: a run interrupted before its stages started has no ledger, so no start time, and `relay runs`
    listed it last (start "-") however new it was. The record's file time where the store is on this
    disk, else the time in a generated run id (``NAME-YYYYMMDD-HHMMSS-XXXX``, local time).
    """
    local = store.local_path(record_path(run_id, COMMAND_FILE))
    try:
        if local is not None:
            return datetime.fromtimestamp(local.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        pass
    stamp = RUN_ID_TIME.search(run_id)
    if stamp is None:
        return ""
    try:
        when = datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S").astimezone()  # the id's time is the machine's
    except ValueError:
        return ""
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _first_error(exc: ValueError) -> str:
    """The first thing wrong with a ledger, as `key.path: message` (pydantic) or the decoding error."""
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']} (got {error['input']!r:.40})"
    return str(exc)


def run_status(store: ArtifactStore, run_id: str) -> RunStatus:
    """The run's status as `relay runs` shows it (INTERRUPTED for a dead driver, UNREADABLE, NOT STARTED)."""
    read = read_view(store, run_id)
    return RunStatus.UNREADABLE if read.problem is not None else _status(read.view or LedgerView())


def unfinished_note(store: ArtifactStore, run_id: str) -> str | None:
    """A line saying the run is not finished and what to do, or None when it finished (or has no ledger here).

    `relay generations` prints it under a table that then shows only the generations the run got to. A
    trial its sweep's scheduler stopped has nothing left (`relay tune --resume` was named as its way on).
    """
    status = run_status(store, run_id)
    if status in (RunStatus.FINISHED, RunStatus.NOT_STARTED):
        return None
    if status.is_live:
        way_on = "look again when it has finished (`relay runs` shows its progress)"
    elif (ended := ended_in_sweep(store, run_id)) == "stopped early":
        return (
            f"Run {run_id} is a trial its sweep's scheduler stopped early: the table shows the generations it ran, "
            "and nothing is left to run (`relay tune --resume` does not continue a stopped trial)"
        )
    elif ended == "completed":
        return None
    elif store.read_record(record_path(run_id, CONFIG_FILE)) is None:  # a tune trial: its sweep keeps its config
        way_on = "it is a trial of a sweep that was cut off: `relay tune CONFIG --resume` continues the sweep"
    elif status is RunStatus.FAILED and (failure := failed_stage(store, run_id)) is not None:
        way_on = _after_failure(store, run_id, *failure)
    else:
        way_on = f"finish it with `relay resume {run_id}{store_option(store.uri)}`"
    return f"Run {run_id} is {status}, not finished; {way_on}"


def failed_stage(store: ArtifactStore, run_id: str) -> tuple[str, str] | None:
    """The first stage the run's ledger records as failed, and its error's first line; None when none is."""
    view = read_view(store, run_id).view
    for name, entry in (view.stages if view else {}).items():
        if entry.state == StageState.FAILED:
            return name, str(entry.error or "no error recorded").strip().splitlines()[0]
    return None


def _after_failure(store: ArtifactStore, run_id: str, stage: str, error: str) -> str:
    """What a FAILED run's note says to do: the failed stage's own error (its advice included), and a resume
    once that cause is fixed.

    Why: the note said "finish it with `relay resume`" of every failed run, also of one whose error
    said to start the run again (its `init.source` weights changed after it was planned), and the
    resume then refused. The error is shown whole, so the two pieces of advice can be read together.
    """
    if error.split(":", 1)[0] in UNREADABLE_DATA_ERRORS:  # as the runner says it (Runner._way_on)
        return (
            f"stage {stage} failed: {error.rstrip('.')}. Once the data is fixed, start a new run (`relay run`): "
            "a resume would refuse the fixed data, since the run's finished stages read it as it was"
        )
    if error.split(":", 1)[0] == CHANGED_WEIGHTS_ERROR:  # its error names both ways on (Runner._way_on too)
        return f"stage {stage} failed: {error.rstrip('.')}"
    return (
        f"stage {stage} failed: {error.rstrip('.')}. Once that cause is fixed, "
        f"`relay resume {run_id}{store_option(store.uri)}` retries it (completed stages are skipped)"
    )


def tracking_note(store: ArtifactStore, run_id: str) -> str | None:
    """A line saying the run's MLflow record is incomplete and how to fill it in, or None when it is not.

    The run's record says so (``tracking.json``, ledger.write_tracking) when the tracking store stopped
    answering during its last attempt: the MLflow runs from there on are missing or left RUNNING, and
    `relay generations` showed an empty table as if that were the run's result.
    """
    lost_at = tracking_lost_at(store, run_id)
    if lost_at is None:
        return None
    return (
        f"Run {run_id}'s MLflow record is incomplete: the tracking store stopped answering at {lost_at} while it "
        f"ran, so the table shows only what reached it; once the store answers, fill the record in with "
        f"`relay resume {run_id}{store_option(store.uri)}` (completed stages are skipped)"
    )


def check_tracked(args: argparse.Namespace, uri: str, run_id: str | None) -> None:
    """InputError (``untracked_run_problem``) when the SQLite store ``uri`` does not exist yet but the run the
    reader would show (``run_id``, else the newest `relay runs` lists) is recorded here and tracked to it."""
    db = sqlite_path(uri)
    if db is None or db.exists():
        return
    try:
        store = store_of(args)
        sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
        if run_id is None:
            rows = run_rows(store, pipelines_of(args), sweeps)
            run_id = rows[0].run_id if rows else None
        tracking = None if run_id is None else _tracking_settings(store, sweeps, run_id)
    except RelayError:  # the reader says what is wrong with the store, if it needs it
        return
    recorded = sqlite_path(str((tracking or {}).get("uri") or ""))
    if run_id is not None and recorded is not None and recorded.absolute() == db.absolute():
        raise InputError(untracked_run_problem(store, run_id, db))


def untracked_run_problem(store: ArtifactStore, run_id: str, db: Path) -> str:
    """What `relay generations` / `relay ui` say when run ``run_id`` is recorded here but its tracking database
    ``db`` does not exist yet: the run stopped (or is still starting) before MLflow recorded anything.

    Why: they said "no runs yet" and advised a new `relay run`, while `relay runs` listed the run and
    `relay resume` would finish it and record it in MLflow.
    """
    status = run_status(store, run_id)
    if status is RunStatus.FINISHED:  # it had one: deleted, or moved without the workspace
        return (
            f"run {run_id} finished, but its tracking database {db} is not there (moved or deleted?); pass the "
            "workspace that holds it (--workspace) or MLFLOW_TRACKING_URI=sqlite:///PATH"
        )
    if status.is_live:
        way_on = "look again once its stages run (`relay runs` shows its progress)"
    else:
        way_on = f"`relay resume {run_id}{store_option(store.uri)}` finishes it and records it in MLflow"
    return f"run {run_id} ({status}) has no MLflow records yet: there is no tracking database at {db}; {way_on}"


def pipeline_kind(store: ArtifactStore, run_id: str) -> str | None:
    """The `pipeline:` of the run's saved config (None for a Tune trial, which keeps no config of its own)."""
    relative = record_path(run_id, CONFIG_FILE)
    try:
        return _kind_of(store.read_record(relative), relative)
    except ArtifactError:
        return None


def _trial_kind(sweeps: Path | None, run_id: str, store: ArtifactStore | None = None) -> str | None:
    """A Tune trial's `pipeline:`, from its sweep record, else the config its sweep saved; None when neither is found.

    A trial keeps only a ledger, whose `pipeline` is the config's `name` (`smoke`), not the kind
    (`crest`) a `relay run` shows.
    """
    recorded = trial_sweep(store, run_id).get("pipeline") if store is not None else None
    if isinstance(recorded, str) and recorded:
        return recorded
    path = sweep_config_of(sweeps, run_id, store)
    try:
        return None if path is None else _kind_of(path.read_bytes(), str(path))
    except OSError:  # no such sweep here
        return None


def trial_sweep(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """What trial ``run_id`` recorded of its sweep (its name, folder and pipeline kind); {} for an older trial
    or a run that is not a trial, and when the record cannot be read."""
    try:
        data = json.loads(store.read_record(record_path(run_id, SWEEP_RECORD)) or b"{}")
    except (ArtifactError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ended_in_sweep(store: ArtifactStore, run_id: str) -> str | None:
    """How trial ``run_id`` ended as its sweep's trials.json says (completed, stopped early, ...); None when unknown.

    Why the sweep's word: a trial's ledger reads STOPPED both when its scheduler stopped it and when
    its sweep's driver was killed between two generations, and only the second is continued by
    `relay tune --resume`. trials.json is written when the sweep ends, in the folder the trial recorded.
    """
    folder = trial_sweep(store, run_id).get("folder")
    if not isinstance(folder, str) or not folder:
        return None
    try:
        records = json.loads((Path(folder) / TRIALS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = (
        [r for r in records if isinstance(r, dict) and r.get("run_id") == run_id] if isinstance(records, list) else []
    )
    status = found[0].get("status") if found else None
    return status if isinstance(status, str) else None


def trial_resume_problem(
    store: ArtifactStore, run_id: str, sweeps: Path | None = None, options: str = ""
) -> str | None:
    """Why `relay resume` cannot take run ``run_id``: it is a Tune trial (a ledger, no config of its own), and
    what to do instead; None when it is not a trial. ``options``: the store options the command was given, for
    the `relay generations` it names (a trial's tracking store is its workspace's, which `--artifact-uri` alone
    does not name).

    Why: `relay resume` of a trial said there was no such run and to list the runs with `relay runs`,
    which lists it. Its way on is its sweep's, as `relay generations` says (``unfinished_note``).
    """
    if store.read_record(record_path(run_id, CONFIG_FILE)) is not None:
        return None
    if store.read_record(record_path(run_id, LEDGER_FILE)) is None:
        return None
    show = f"`relay generations {run_id}{options}`"
    trial = f"run_id: {run_id} is a trial of a sweep (`relay tune`), which `relay resume` does not continue"
    ended = ended_in_sweep(store, run_id)
    if ended == "stopped early":
        return (
            f"{trial}: its sweep's scheduler stopped it early, so nothing is left to run (`relay tune --resume` "
            f"does not continue a stopped trial either); {show} shows the generations it ran"
        )
    status = run_status(store, run_id)
    if ended == "completed" or status is RunStatus.FINISHED:
        return f"{trial}: it finished, so nothing is left to run; {show} shows its results"
    if status.is_live:
        return f"{trial}: its sweep is still running it (`relay runs` shows its progress)"
    saved = sweep_config_of(sweeps, run_id, store)
    started = f" with the config and overrides it started with (saved in {saved})" if saved and saved.is_file() else ""
    return f"{trial}: `relay tune CONFIG --resume` continues its sweep{started}, this trial included"


def sweep_config_of(sweeps: Path | None, run_id: str, store: ArtifactStore | None = None) -> Path | None:
    """Where the sweep of trial ``run_id`` saved its config; None when the id cannot be a trial's.

    A trial records its sweep's folder (``trial_sweep``), which `--output` may have put anywhere;
    an older trial's run id is `<sweep>-<trial id>`, and its sweep's config is looked for in
    WORKSPACE/tune/<sweep>/.
    """
    folder = trial_sweep(store, run_id).get("folder") if store is not None else None
    if isinstance(folder, str) and folder and (Path(folder) / SWEEP_CONFIG).is_file():
        return Path(folder) / SWEEP_CONFIG
    sweep = run_id.rsplit("-", 1)[0]
    if sweeps is None or sweep in (run_id, ".", ".."):
        return None
    return sweeps / sweep / SWEEP_CONFIG


def trial_record(
    sweeps: Path | None, run_id: str, pipelines: Pipelines, store: ArtifactStore | None = None
) -> tuple[PipelineSpec, Any] | None:
    """The spec and config trial ``run_id`` ran with, from its sweep's saved config; None when that is not here.

    Why: a trial keeps only its ledger (and its outputs, by fingerprint), no config.yaml, so the
    readers of a run's outputs found "no run". Its config is the sweep's without `tune:`, with the
    trial's sampled values (the sweep's trials.json) applied; those values never change the stages
    (`relay tune` checks that), so the DAG is right even before trials.json lists the trial. ``store``: the
    store holding the trial's record, which names its sweep's folder (``sweep_config_of``).
    """
    path = sweep_config_of(sweeps, run_id, store)
    if path is None or not path.is_file():
        return None
    data = yaml_mapping(path.read_text(encoding="utf-8"), str(path))
    space = (data.pop("tune", None) or {}).get("space") or {}
    spec = get_pipeline(data.get("pipeline"), pipelines, source=str(path))
    values = trial_values(path.parent, run_id, space)
    return spec, validate_config(spec.config_model, apply_overrides(data, values), source=str(path))


def trial_values(sweep_folder: Path, run_id: str, space: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the search space trial ``run_id`` ran with, as the sweep's trials.json lists them; {} when it does not."""
    try:
        records = json.loads((sweep_folder / TRIALS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written until the sweep ends, or damaged
        return {}
    found = (
        [r for r in records if isinstance(r, dict) and r.get("run_id") == run_id] if isinstance(records, list) else []
    )
    return {key: found[0][key] for key in space if key in found[0]} if found else {}


def _kind_of(text: bytes | None, source: str) -> str | None:
    """The `pipeline:` of a config's YAML text; None when there is none or the text cannot be read."""
    kind = (_mapping_of(text, source) or {}).get("pipeline")
    return kind if isinstance(kind, str) else None


def _mapping_of(text: bytes | None, source: str) -> dict[str, Any] | None:
    """A config's YAML text as a mapping; None when there is none or it cannot be read."""
    try:
        return None if text is None else yaml_mapping(text.decode(), source)
    except (ConfigError, UnicodeDecodeError):
        return None


class DefaultExperiment(NamedTuple):
    """The MLflow experiment a reader given neither a run id nor `--experiment` reads (`relay generations`,
    `relay ui`), and, when it is only the default one, a line saying so and how to read another.

    ``tracking_uri``: the newest run's own tracking store, which its record names, to read in place of the
    default one (None: the default one); ``tracking_key`` names that setting in messages about it.
    """

    name: str
    note: str | None = None
    tracking_uri: str | None = None
    tracking_key: str = ""


def newest_run_experiment(args: argparse.Namespace) -> DefaultExperiment:
    """The experiment of the newest run `relay runs` lists, and its tracking store when that is not the default
    one (the one the readers read without a run id: $MLFLOW_TRACKING_URI, else the workspace's).

    Why: the readers showed the newest run of the `relay` experiment, so after a run with
    `tracking.experiment=NAME` they showed an older run than `relay runs` lists first, and said
    nothing. Its experiment is in its record's config (a Tune trial's: its sweep's); when the newest
    run cannot be read, the default experiment is read, and the note says so. A newest run tracked
    elsewhere (a tracking server its config names) is read there, as `relay generations RUN_ID`
    reads it: a second machine with no tracking database of its own said "no runs yet" while `relay
    runs` listed the run. Not when the user named the store to read ($MLFLOW_TRACKING_URI), nor when
    that run's store cannot be read from here while the default one can: the default one is read then,
    and the note says why.
    """
    default = TrackingSettings().experiment
    tracking_store = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    try:
        store = store_of(args)
        sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
        rows = run_rows(store, pipelines_of(args), sweeps)
    except RelayError as exc:  # the reader says what is wrong with the store, if it needs it
        return DefaultExperiment(default, _default_experiment_note(default, f"the run records cannot be read: {exc}"))
    if not rows:  # nothing `relay runs` would list to contradict (a laptop reading the team's tracking server)
        return DefaultExperiment(default)
    newest = rows[0].run_id
    tracking = _tracking_settings(store, sweeps, newest)
    if tracking is None:
        why = f"the config of {newest}, the newest run `relay runs` lists, cannot be read"
        return DefaultExperiment(default, _default_experiment_note(default, why))
    experiment = str(tracking.get("experiment") or default)
    recorded = str(tracking.get("uri") or tracking_store)
    if recorded == tracking_store or tracked_in_this_workspace(store, newest, tracking_store):
        return DefaultExperiment(experiment, untracked_newest_note(store, rows[0]))
    why = f"{newest}, the newest run `relay runs` lists, was tracked in {recorded}"
    if os.environ.get(TRACKING_URI_ENV):  # the user named the store to read
        return DefaultExperiment(default, _default_experiment_note(default, why))
    problem = unreadable_store_problem(recorded)
    if problem is None:
        key = f"tracking.uri (in run {newest}'s record, the newest `relay runs` lists)"
        return DefaultExperiment(experiment, untracked_newest_note(store, rows[0]), recorded, key)
    why = f"{why}, which cannot be read here ({problem})"
    if unreadable_store_problem(tracking_store) is not None:  # neither can be read: the newest run's is the one meant
        raise InputError(
            f"{why}; once it can, it is read there, or name the tracking store to read (${TRACKING_URI_ENV}=URI)"
        )
    return DefaultExperiment(default, _default_experiment_note(default, why))


def unreadable_store_problem(uri: str) -> str | None:
    """Why the tracking store ``uri`` cannot be read from here, None when it can: a form MLflow has no store for,
    a SQLite database that is not on this machine (or no database), a server that does not answer."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return f"there is no tracking database {db} on this machine"
    return tracking_uri_problem(uri, "tracking.uri", writes=False) or tracking_problem(uri)


def untracked_newest_note(store: ArtifactStore, newest: RunRow) -> str | None:
    """A line saying the newest run `relay runs` lists is not the run shown, as it has no MLflow run; None when it has.

    Why: `relay generations` without a run id shows the newest run MLflow has; when the newest run's tracking
    store failed at its start (its record says so: ``tracking.json``), that is an older run, shown without a word.
    """
    if newest.tracking_lost_at != START:
        return None
    return (
        f"The newest run `relay runs` lists, {newest.run_id} ({newest.status}), is not the one shown: its tracking "
        f"store failed at the run's start, so it has no MLflow run; `relay generations {newest.run_id}"
        f"{store_option(store.uri)}` says more, and `relay resume {newest.run_id}{store_option(store.uri)}` "
        "fills its record in once the store works"
    )


def _tracking_settings(store: ArtifactStore, sweeps: Path, run_id: str) -> dict[str, Any] | None:
    """The `tracking:` settings of the run's config (a Tune trial's: its sweep's); None when it cannot be read."""
    relative = record_path(run_id, CONFIG_FILE)
    try:
        config = _mapping_of(store.read_record(relative), relative)
    except ArtifactError:
        config = None
    if config is None:
        path = sweep_config_of(sweeps, run_id, store)
        try:
            config = None if path is None else _mapping_of(path.read_bytes(), str(path))
        except OSError:  # no such sweep here
            config = None
    if config is None:
        return None
    tracking = config.get("tracking")
    return tracking if isinstance(tracking, dict) else {}  # none: the defaults


def _default_experiment_note(experiment: str, why: str) -> str:
    return (
        f"The newest run of MLflow experiment {experiment!r} is shown ({why}); "
        "for another experiment's, pass --experiment NAME"
    )


def _status(ledger: LedgerView) -> RunStatus:
    """The ledger's status; RUNNING with a dead driver on this host is INTERRUPTED; no ledger yet: STARTING
    while its driver (on this host) lives, INTERRUPTED when it died, else NOT STARTED."""
    driver = ledger.driver or _Driver()
    if ledger.status is None and driver.host == socket.gethostname():
        return RunStatus.STARTING if alive(driver.pid) else RunStatus.INTERRUPTED
    if ledger.status is None:
        return RunStatus.NOT_STARTED
    if ledger.status is RunStatus.RUNNING and driver.host == socket.gethostname() and not alive(driver.pid):
        return RunStatus.INTERRUPTED
    return ledger.status


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host lives (someone else's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:  # a pid no process can have
        return False
    return True


def _generations(per_generation: Mapping[int, int], stages: Mapping[str, _Stage], reported: int | None = None) -> str:
    """`done/total`: a generation is done when every one of its stages succeeded or was cached, or when it is
    ``reported``, the generation a Tune trial ran up to its metric stage and reported (``_reported_generation``)."""
    if not per_generation:
        return "-"
    done_counts: dict[int, int] = {}
    for entry in stages.values():
        if entry.generation is not None and entry.state in DONE_STATES:
            done_counts[entry.generation] = done_counts.get(entry.generation, 0) + 1
    done = sum(done_counts.get(g, 0) == n or g == reported for g, n in per_generation.items())
    return f"{done}/{len(per_generation)}"


def _reported_generation(ledger: LedgerView) -> int | None:
    """The generation whose metric stage a Tune trial's last attempt ran to and finished (its ``stop_after``), if any.

    Why: a trial runs each generation only up to the stage whose metric it reports; the generation's
    later stages (pseudo-labels for the next one) run with the next generation. A trial the scheduler
    (ASHA) stopped after its g00 report therefore lacked them and showed `STOPPED 0/2`, while one killed
    during g01, which had run them, showed `1/2`: both had finished g00 as the sweep counts it.
    """
    entry = ledger.stages.get(ledger.stop_after or "")
    return entry.generation if entry is not None and entry.state in DONE_STATES else None


def _best(headline: str | None, stages: Mapping[str, _Stage]) -> str:
    """The best (highest) value of the pipeline's headline metric (`<role>/<metric>`) over ``stages``."""
    if headline is None or "/" not in headline:
        return "-"
    role, metric = headline.split("/", 1)
    values = [
        (entry.metrics[metric], entry.generation)
        for name, entry in stages.items()
        if name.rsplit("/", 1)[-1] == role and metric in entry.metrics
    ]
    if not values:
        return "-"
    value, generation = max(values, key=lambda item: item[0])
    where = f" (g{generation:02d})" if generation is not None else ""
    return f"{metric} {value:.4f}{where}"


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "-"


def cmd_runs(args: argparse.Namespace) -> int:
    store = store_of(args)
    check_named_store_exists(args, store)
    pipelines, sweeps = pipelines_of(args), resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
    every = run_rows(store, pipelines, sweeps)
    if not every:
        folder = local_path(store.uri)
        missing = f" ({folder} does not exist: check the path)" if folder and not Path(folder).exists() else ""
        print(f"no runs in {store.uri} yet{missing}: start one with `relay run pipelines/configs/smoke.yaml`")
        return 0
    rows = chosen_rows(every, args.status, args.pipeline, args.last)
    if not rows:
        print(f"none of the {len(every)} runs in {store.uri} is {_asked(args)}; `relay runs` lists them all")
        return 0
    headers, body = HEADERS, [row.cells() for row in rows]
    if args.overrides:
        headers, body = (
            [*HEADERS, "overrides"],
            [[*cells, overrides_cell(store, row.run_id)] for cells, row in zip(body, rows)],
        )
    print(text_table(headers, body))
    unreadable = [f"{row.run_id} is {RunStatus.UNREADABLE}: {row.problem}" for row in rows if row.problem is not None]
    if unreadable:
        print("\n" + "\n".join(unreadable))
    incomplete = incomplete_tracking_line(rows, store.uri)
    if incomplete:
        print(f"\n{incomplete}")
    no_best = not_installed_best_line(rows, store, pipelines, sweeps)
    if no_best:
        print(no_best, file=sys.stderr)
    return 0


def not_installed(kind: str | None, pipelines: Pipelines) -> bool:
    """Whether ``kind`` is a pipeline that no package installed here declares (one declared but refused,
    ``LoadedPipelines.rejected``, is installed: reading its run says why it cannot be used)."""
    return kind is not None and kind not in pipelines and kind not in getattr(pipelines, "rejected", {})


def not_installed_best_line(rows: list[RunRow], store: ArtifactStore, pipelines: Pipelines, sweeps: Path) -> str | None:
    """The stderr line saying why `best` is `-` for the rows made by pipelines no package installed here declares.

    Why: the best column is the pipeline's headline metric, which only its spec names (PipelineSpec.summary),
    so every run of a plug-in read where the plug-in is not installed showed `-`, as if it had no result.
    None when no shown row is such a run (a pipeline declared but refused is installed: it says why on use).
    """
    by_kind: dict[str, list[str]] = {}
    for row in rows:
        if row.best != "-" or row.status is RunStatus.UNREADABLE or row.pipeline in pipelines:
            continue
        kind = pipeline_kind(store, row.run_id) or _trial_kind(sweeps, row.run_id, store)
        if not_installed(kind, pipelines):
            by_kind.setdefault(kind, []).append(row.run_id)
    if not by_kind:
        return None
    which = "; ".join(f"pipeline {kind!r}: {', '.join(ids)}" for kind, ids in sorted(by_kind.items()))
    return (
        f"relay: best is - for the runs of pipelines that no package installed here declares ({which}): the column "
        "is the pipeline's headline metric, which its package names; install that package (its `relay.pipelines` "
        "entry point) to fill it, or read a run's metrics with `relay generations RUN_ID`"
    )


def check_named_store_exists(args: argparse.Namespace, store: ArtifactStore) -> None:
    """Refuse (exit 2) a store named on purpose that is not there: a missing workspace (--workspace,
    $RELAY_WORKSPACE), or a missing artifact store folder (--artifact-uri, $RELAY_ARTIFACT_URI).

    Why: `relay runs --workspace /typo` said "no runs ... yet" and exited 0, as if it had looked, while
    `relay generations` and `relay gc` refuse the same path. The default workspace not made yet, or a
    workspace no run has written to yet, is no mistake: it has no runs yet, and says so.
    """
    folder = local_path(store.uri)
    if folder is None or Path(folder).exists():
        return
    key = _store_key(args)
    missing: Path | str = folder
    if key in ("--workspace", f"${WORKSPACE_ENV}"):
        missing = resolve_workspace(RunSettings(workspace=args.workspace))
        if missing.is_dir():
            return
    elif key not in ("--artifact-uri", f"${ARTIFACT_URI_ENV}"):
        return
    what = "workspace" if isinstance(missing, Path) else "artifact store"
    raise ConfigError([f"{key}: the {what} {missing} does not exist: check the path"], "the command line")


def incomplete_tracking_line(rows: list[RunRow], store_uri: str) -> str | None:
    """The line under `relay runs` naming the runs marked INCOMPLETE_MARK and how to fill their MLflow record in.

    Why: a run whose tracking store stopped answering (or failed at its start) is listed FINISHED like any
    other, while MLflow lacks some or all of it; `relay run` said so once, and `relay runs` never did.
    """
    marked = [row.run_id for row in rows if row.tracking_lost_at is not None]
    if not marked:
        return None
    which = marked[0] if len(marked) == 1 else "RUN"
    return (
        f"{INCOMPLETE_MARK} incomplete MLflow record (the tracking store stopped answering while the run ran, or "
        f"failed at its start): {', '.join(marked)}; once the store answers, `relay resume {which}"
        f"{store_option(store_uri)}` fills it in (completed stages are skipped)"
    )


def chosen_rows(
    rows: list[RunRow], statuses: list[RunStatus] | None, pipeline: str | None, last: int | None
) -> list[RunRow]:
    """The rows (newest first) with one of ``statuses`` and of ``pipeline`` (its kind or its config's `name`),
    the newest ``last`` of them; None for any of the three: no filter."""
    kept = [
        row
        for row in rows
        if (not statuses or row.status in statuses) and (pipeline is None or pipeline in (row.pipeline, row.name))
    ]
    return kept if last is None else kept[:last]


def _asked(args: argparse.Namespace) -> str:
    """The filters given, as a phrase: `FAILED or STOPPED, of pipeline crest`."""
    said = [" or ".join(args.status)] if args.status else []
    return ", ".join(said + ([f"of pipeline {args.pipeline}"] if args.pipeline else []))


def overrides_cell(store: ArtifactStore, run_id: str) -> str:
    """The `key=value` overrides run ``run_id`` was started with (its command.json), cut to OVERRIDES_WIDTH
    characters; "-" when it has none, "?" when it keeps no command record (a Tune trial) or it cannot be read."""
    try:
        overrides = read_command_record(store, run_id).get("overrides")
    except ArtifactError:
        return "?"
    if not isinstance(overrides, list):
        return "?"
    text = " ".join(str(item) for item in overrides) or "-"
    return text if len(text) <= OVERRIDES_WIDTH else text[: OVERRIDES_WIDTH - 3] + "..."


def status_filter(value: str) -> list[RunStatus]:
    """`--status failed,stopped` as the statuses `relay runs` shows (`not-started` for NOT STARTED); an unknown
    one is bad input naming them all."""
    statuses = [item.strip().upper().replace("_", " ").replace("-", " ") for item in value.split(",") if item.strip()]
    unknown = [item for item in statuses if item not in tuple(RunStatus)]
    if unknown or not statuses:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown) or repr(value)}; pick from {', '.join(RunStatus)} "
            "(several: comma-separated; NOT STARTED as not-started)"
        )
    return [RunStatus(item) for item in statuses]


def positive_count(value: str) -> int:
    """`--last N`: a whole number of runs, 1 or more."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of runs, 1 or more, got {value!r}")
    return count


def register(commands: Any) -> None:
    about = "the artifact store's pipeline runs: status, generations done, best metric"
    parser = commands.add_parser("runs", help=about, description=about)
    add_workspace(parser)
    add_artifact_uri(parser)
    parser.add_argument(
        "--status",
        type=status_filter,
        action="extend",
        metavar="STATUS",
        help=f"only runs with this status ({', '.join(RunStatus)}; comma-separated or repeated for several)",
    )
    parser.add_argument("--pipeline", metavar="NAME", help="only runs of this pipeline (crest) or config name (smoke)")
    parser.add_argument("--last", type=positive_count, metavar="N", help="only the newest N runs (after the filters)")
    parser.add_argument(
        "--overrides",
        action="store_true",
        help=f"add a column with the key=value overrides each run was started with (cut to {OVERRIDES_WIDTH} characters)",
    )
    parser.set_defaults(handler=cmd_runs)
