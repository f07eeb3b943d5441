"""`relay generations`: a run's per-generation table, read back from the tracking store it was tracked to.

Apart from `relay run`'s module because reading a run back has its own questions: which run (an id,
an MLflow run id, or the newest run `relay runs` lists), which tracking store and experiment (the
run's record, else the defaults), and which columns (its pipeline's summary). The table itself is
the one `relay run` prints at its end (``summary_table``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.cli.common import Pipelines, add_artifact_uri, add_workspace, pipelines_of, store_of, store_option
from orchestrator.cli.preflight import check_run_id, location_problems
from orchestrator.cli.records.newest_run import DefaultExperiment, check_tracked, newest_run_experiment
from orchestrator.cli.records.run_notes import tracking_note, unfinished_note
from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.records.runs import not_installed
from orchestrator.cli.records.trials import pipeline_kind
from orchestrator.cli.records.workspace import check_tracking_store, default_tracking_key
from orchestrator.cli.run.run_record import moved_workspace, read_run_record
from orchestrator.config import PipelineConfig, RunSettings, TrackingSettings, tracking_uri, validate_config
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RUNS, RunStatus, record_path
from orchestrator.errors import ConfigError, RelayError
from orchestrator.registry import CONFIG_FIELDS
from orchestrator.tracking import common as tracking_common
from orchestrator.tracking import lookup, report
from orchestrator.tracking.reading import recorded_pipeline
from orchestrator.yaml_input import yaml_mapping

log = logging.getLogger("relay")


NO_GENERATION_YET = "no generation has finished yet, so there is no per-generation result on the test set"


def summary_table(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, str]) -> str:
    """The pipeline's summary columns that some row fills, one line per generation (``report.generation_table``).

    Why: a pipeline's summary names every column any of its configurations reports, so the
    class-balanced demo (pipeline ke, one generation, no masks, no baseline) printed slim_accuracy,
    slim_params and the compute-matched baseline as columns of '-' only. A column a row fills
    stays, with '-' in the rows that lack it. When no row fills any column (a run stopped after its
    split, or failed before its first evaluation) there is no table but one line saying so: a header of
    every column the pipeline could report (a CReST run's `pretext probe`) claimed results it never had,
    while a run with train metrics only printed a `generation` column and an empty row `0`.
    """
    filled = {header: metric for header, metric in summary.items() if has_value(rows, metric)}
    if not filled:
        return NO_GENERATION_YET
    return report.generation_table(rows, filled)


def has_value(rows: Sequence[Mapping[str, Any]], metric: str) -> bool:
    """Whether some row has ``metric``, or for a family column (``rebalance/kept/*``) any metric of it."""
    if metric.endswith("/*"):
        prefix = metric[:-1]
        return any(key.startswith(prefix) for row in rows for key in row)
    return any(row.get(metric) is not None for row in rows)


def tracking_for(
    args: argparse.Namespace, newest: DefaultExperiment | None = None
) -> tuple[str, str, Mapping[str, str] | None]:
    """Tracking URI, experiment and summary columns of a run (or of the workspace's defaults), checked.

    The run's record (in the artifact store) names its tracking store and pipeline. Without
    one, the tracking store is the default one (tracking.uri's defaults: $MLFLOW_TRACKING_URI,
    else the workspace's). With no run named the columns are None here: which run is the newest,
    and so whose pipeline picks them, is known once it is read (``newest_run_columns``). The store is
    checked before MLflow opens it (workspace.check_tracking_store), so a bad one is one
    message, not a trace. The experiment is `--experiment` when given, else the record's, else the
    default: a run id once made the flag be ignored (exit 0 for `--experiment nosuch`), as the flag is
    not without one, nor for a run read from the tracking store alone, where it is the only way to name it.
    ``newest``: without a run id, what the newest run `relay runs` lists records (``newest_run_experiment``);
    its own tracking store, when it names one, is read in place of the default one.
    """
    pipelines = pipelines_of(args)
    store = store_of(args)
    if args.run_id is not None:
        check_run_id(args.run_id)
        if store.read_record(record_path(args.run_id, CONFIG_FILE)) is None:
            check_tracking_server_answers(args)
            args.run_id = relay_run_of(args)
        if store.read_record(record_path(args.run_id, CONFIG_FILE)) is None:
            return tracked_only(args, store, pipelines)
        summary, config = record_to_show(store, args.run_id, pipelines)
        moved = moved_workspace(config, store.uri)
        uri = f"sqlite:///{moved[1] / 'mlflow.db'}" if moved else tracking_uri(config.run, config.tracking)
        check_tracking_store(uri, f"tracking.uri (in run {args.run_id}'s record)")
        return uri, args.experiment or config.tracking.experiment, summary
    uri, key = (newest.tracking_uri, newest.tracking_key) if newest and newest.tracking_uri else default_store(args)
    check_tracking_store(uri, key)
    return uri, experiment_of(args), None


def record_to_show(store: ArtifactStore, run_id: str, pipelines: Pipelines) -> tuple[Mapping[str, str] | None, Any]:
    """The summary columns and the config of run ``run_id``'s record, read to show the run, not to compute it.

    A run made by a pipeline that no package installed here declares (a plug-in's, read on a machine
    without it) has no columns (None: every metric, one a line) and its config is read for Relay's
    own fields alone (``relay_fields``), which say where it was tracked. Why: `relay generations` of
    such a run exited 2 asking to install the plug-in, though what the run tracked needs none of its
    code to be shown; `relay resume` and `relay run` still need it, and still refuse without it.
    """
    if not_installed(pipeline_kind(store, run_id), pipelines):
        return None, relay_fields(store, run_id)
    spec, config = read_run_record(store, run_id, pipelines, writes=False)
    return spec.summary, config


def relay_fields(store: ArtifactStore, run_id: str) -> PipelineConfig:
    """The run's saved config as the fields Relay reads from every pipeline file (PipelineConfig: ``run``,
    ``tracking``, ...), checked as ``load_saved_config`` checks them; the pipeline's own sections are left
    out, since only its package can check them."""
    relative = record_path(run_id, CONFIG_FILE)
    source = store.location(relative)
    data = yaml_mapping((store.read_record(relative) or b"").decode(), source)
    config = validate_config(PipelineConfig, {key: data[key] for key in CONFIG_FIELDS if key in data}, source)
    problems = location_problems(config.run, config.tracking, writes=False)
    if problems:
        raise ConfigError(problems, source)
    return config


def not_installed_line(
    store: ArtifactStore, pipelines: Pipelines, uri: str, experiment: str, run_id: str
) -> str | None:
    """The stderr line saying the run's pipeline is not installed here, so its table is every metric; None when
    its pipeline is installed or not known (its record's `pipeline:`, else its MLflow run's `pipeline` param)."""
    kind = pipeline_kind(store, run_id) or recorded_pipeline(uri, experiment, run_id)
    if kind is None or not not_installed(kind, pipelines):
        return None
    return (
        f"relay: run {run_id} was made by pipeline {kind!r}, which no package installed here declares, so its "
        "table is every metric, one a line; install the package that provides it (its `relay.pipelines` entry "
        "point) for its pipeline's columns"
    )


def default_store(args: argparse.Namespace) -> tuple[str, str]:
    """The default tracking store ($MLFLOW_TRACKING_URI, else the workspace's) and the setting that named it."""
    return tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings()), default_tracking_key(args.workspace)


def check_tracking_server_answers(args: argparse.Namespace) -> None:
    """Refuse (exit 2) a default tracking store that is a server and does not answer, before a run id is looked up.

    Why: a run that is not in the artifact store is looked for there (an MLflow run id, a run only
    tracked), and a dead server was reported as the run missing from the artifact store, or as an
    MLflow run id the store did not know. A SQLite store that does not exist yet only means no run is
    tracked there, which the lookup says itself.
    """
    uri = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    if tracking_common.sqlite_path(uri) is None:
        check_tracking_store(uri, default_tracking_key(args.workspace))


def relay_run_of(args: argparse.Namespace) -> str:
    """The Relay run that ``args.run_id`` names (``lookup.relay_run_named``), asked of the default tracking store
    (the workspace's, or $MLFLOW_TRACKING_URI); the id as given when there is none to ask."""
    client = default_tracking_client(args)
    if client is None:
        return args.run_id
    return lookup.relay_run_named(client, args.run_id, store_options(args))


def default_tracking_client(args: argparse.Namespace) -> Any:
    """An MLflow client of the default tracking store (the workspace's, or $MLFLOW_TRACKING_URI); None when there
    is none to ask (no database yet: MLflow would create its tables in it, or a store that does not answer)."""
    uri = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    try:
        check_tracking_store(uri, default_tracking_key(args.workspace))
    except RelayError as exc:
        log.debug("no tracking store to ask at %s: %s", uri, exc)
        return None
    return lookup.readable_client(uri)


def store_options(args: argparse.Namespace) -> str:
    """The --workspace / --artifact-uri the user gave, as options to repeat in a command shown to them."""
    given = (("--workspace", args.workspace), ("--artifact-uri", getattr(args, "artifact_uri", None)))
    return "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in given if value)


def experiment_of(args: argparse.Namespace) -> str:
    """`--experiment`, else the default one (tracking.experiment's default): for runs no record here names."""
    return args.experiment or TrackingSettings().experiment


def tracked_only(args: argparse.Namespace, store: ArtifactStore, pipelines: Pipelines) -> tuple[str, str, Any]:
    """A run whose record is not in this store, read from the default tracking store alone (e.g. a laptop that
    sees the team's MLflow server, not the cluster's storage); the record's absence is the error otherwise."""
    uri = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    try:
        check_tracking_store(uri, default_tracking_key(args.workspace))
        kind = recorded_pipeline(uri, experiment_of(args), args.run_id)
    except RelayError:
        kind = None
    if kind is None:
        # raises: no such run in the store, and how to name it
        read_run_record(store, args.run_id, pipelines, writes=False)
    spec = pipelines.get(kind) if kind else None
    return uri, experiment_of(args), spec.summary if spec is not None else None


def newest_run_columns(
    store: ArtifactStore, pipelines: Pipelines, uri: str, experiment: str, run_id: str
) -> tuple[Mapping[str, str] | None, str | None]:
    """The columns for the newest run, ``run_id``, and a line saying whose they are when not its own pipeline's.

    Its own pipeline, as for `relay generations RUN_ID`: its record's `pipeline:`, else the
    `pipeline` param of its MLflow run. A Tune trial keeps no record, and taking the columns of
    the store's newest record (another run's) showed a sweep's trial with every metric, about 60
    columns. Failing both, the newest readable record's pipeline, said so; else None: every metric.
    """
    kind = pipeline_kind(store, run_id) or recorded_pipeline(uri, experiment, run_id)
    if kind in pipelines:
        return pipelines[kind].summary, None
    if not_installed(kind, pipelines):  # another pipeline's columns would miss its metrics: every metric
        return None, None
    newest = newest_recorded_pipeline(store, pipelines)
    if newest is None:
        return None, None
    return pipelines[newest].summary, (
        f"Run {run_id} names no installed pipeline (no run record here, no `pipeline` param in MLflow): "
        f"the columns are those of {newest!r}, the pipeline of the newest run record"
    )


def newest_recorded_pipeline(store: ArtifactStore, pipelines: Pipelines) -> str | None:
    """The installed pipeline that the store's newest readable run record names.

    A record that cannot be read (not UTF-8, not YAML, a `pipeline:` that names nothing) is
    skipped: it only chooses columns, and an older record can choose them as well.
    """
    for relative in store.newest_records(RUNS, CONFIG_FILE):  # runs/RUN_ID/config.yaml
        kind = pipeline_kind(store, relative.split("/")[1])
        if kind in pipelines:
            return kind
    return None


def print_generations(
    run_id: str, rows: list[dict[str, Any]], summary: Mapping[str, str] | None, status: RunStatus | None = None
) -> None:
    """Print the run's per-generation table: its pipeline's summary columns, else every metric, one a line.

    ``status``: the run's (from its ledger), said on the one line that replaces a table no row fills.
    """
    if not rows or (summary is not None and summary_table(rows, summary) == NO_GENERATION_YET):
        said = f" (the run is {status})" if status else ""
        print(f"\nRun {run_id}: {NO_GENERATION_YET}{said}")
        return
    if summary is None:
        print(
            f"\nRun {run_id}: every metric per generation on the test set; neither a run record here "
            "nor its MLflow run names an installed pipeline to pick the columns"
        )
        print(report.metric_table(rows))
        return
    print(f"\nRun {run_id}: per-generation results on the test set")
    print(summary_table(rows, summary))


def cmd_generations(args: argparse.Namespace) -> int:
    """The run's table, and a line saying so when the run is not finished: the table then shows only part of it."""
    experiment_note, newest = None, None
    if args.run_id is None:  # the newest run `relay runs` lists: read from its tracking store and experiment
        newest = newest_run_experiment(args)
        if args.experiment is None:
            args.experiment, experiment_note = newest.name, newest.note
    uri, experiment, summary = tracking_for(args, newest)
    check_tracked(args, uri, args.run_id)
    store = store_of(args)
    run_id, rows = lookup.read_run_generations(store, uri, experiment, args.run_id, store_option(store.uri))
    columns_note = None
    if args.run_id is None:  # the newest run: known only now, and its pipeline picks the columns
        summary, columns_note = newest_run_columns(store, pipelines_of(args), uri, experiment, run_id)
    missing = not_installed_line(store, pipelines_of(args), uri, experiment, run_id) if summary is None else None
    if missing and rows:
        print(missing, file=sys.stderr)
    print_generations(run_id, rows, summary, run_status_of(store, run_id))
    notes = (columns_note, experiment_note, unfinished_note(store, run_id), tracking_note(store, run_id))
    for note in notes:
        if note:
            print(f"\n{note}")
    return 0


def run_status_of(store: ArtifactStore, run_id: str) -> RunStatus | None:
    """The run's status as `relay runs` says it, None when this store holds no ledger of it (a sweep's trial)."""
    try:
        status = run_status(store, run_id)
    except RelayError:
        return None
    return None if status in (RunStatus.NOT_STARTED, RunStatus.UNREADABLE) else status


def register_generations(commands: Any) -> None:
    """`relay generations`, registered apart so `relay --help` keeps listing it after `tune`."""
    about = "per-generation table of a run (default: latest)"
    generations = commands.add_parser("generations", help=about, description=about)
    generations.add_argument("run_id", nargs="?", help="the run (default: the newest pipeline run)")
    generations.add_argument(
        "--experiment",
        help="the MLflow experiment to read the run from (default: the one its run record names, else relay)",
    )
    add_workspace(generations)
    add_artifact_uri(generations)
    generations.set_defaults(handler=cmd_generations)
