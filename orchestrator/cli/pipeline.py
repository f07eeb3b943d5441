"""`relay run`, `relay resume`, `relay validate`: one pipeline run, end to end.

This is the composition root of a run: it wires the chosen pipeline to the engine (store,
executor, runner) and to tracking (MLflow on a background thread).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import shlex
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import ui
from orchestrator.cli import cluster_fit, cluster_join, resume_guard, run_locations, runs
from orchestrator.cli.code_versions import log_code_versions, pipeline_code_versions
from orchestrator.cli.common import (
    add_artifact_uri,
    add_cluster_address,
    add_location_overrides,
    add_workspace,
    cluster_address,
    new_run_id,
    pipelines_of,
    store_of,
    store_option,
)
from orchestrator.cli.generations import summary_table
from orchestrator.cli.pipeline_files import load_pipeline_config, overridden, overrides_origin
from orchestrator.cli.preflight import check_new_run, check_run_id, check_stop_after, open_store
from orchestrator.cli.resume_checks import check_data_unchanged, check_resume_stop_after
from orchestrator.cli.run_record import (
    moved_workspace,
    read_run_record,
    recorded_ray_address,
    relocated_workspace,
    rerun_on_resume,
    save_run_record,
    with_locations,
)
from orchestrator.config import (
    RunSettings,
    TrackingSettings,
    apply_overrides,
    load_yaml,
    resolve_workspace,
    tracking_uri,
)
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import Executor, LocalExecutor
from orchestrator.engine.ledger import (
    CONFIG_FILE,
    RunStatus,
    failed_start_recorded,
    record_path,
    tracking_lost_at,
    write_tracking,
)
from orchestrator.engine.progress import ProgressDisplay
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.runner import Runner
from orchestrator.engine.signals import EXIT_TERMINATED, interrupts_kept, terminated_by_signal
from orchestrator.errors import ArtifactError, ConfigError, InputError, RelayError
from orchestrator.tracking.background import BackgroundTracker
from orchestrator.tracking.mlflow_tracker import START, START_CUT_SHORT, mlflow_tracker, parent_keys

log = logging.getLogger("relay")


# --- configuration ---------------------------------------------------------------------


def checked_locations(config: Any, source: str | None, address: str | None = None) -> Any:
    """``config`` with its stores resolved and written in, once they are checked (exit 2 before anything is written).

    On a cluster (inside a Ray job, or joining one as its driver: ``address``, ``run.ray_address``,
    RAY_ADDRESS) the stores must also outlive the cluster and be seen by every node: stages on
    other nodes write there too (run_locations.check_durable).
    """
    locations = run_locations.resolved_locations(config)
    if run_locations.in_ray_job() or cluster_join.joins_cluster(address, config.run):
        run_locations.check_durable(locations, source)
    run_locations.check_reachable(locations, source)
    return with_locations(config, locations.store, locations.tracking)


# --- running ---------------------------------------------------------------------------


def make_executor(settings: RunSettings, address: str | None = None) -> Executor:
    """Ray by default; `run.executor=local` runs stages in this process (debugging, unit tests).

    The cluster: ``address``, else ``run.ray_address`` (outside a Ray job: inside one, the
    job's own cluster in RAY_ADDRESS), else a new local Ray instance.
    """
    if settings.executor == "local":
        return LocalExecutor()
    if address is None and not run_locations.in_ray_job():
        address = settings.ray_address
    return RayExecutor(address=address, num_cpus=settings.num_cpus, object_store_memory=settings.object_store_memory)


@dataclass(frozen=True)
class PreparedRun:
    """A run that passed every check and opened its store, with nothing written yet.

    ``rerun`` names the stages to run even when cached (`--rerun-from`, `--no-cache`).
    """

    spec: Any
    config: Any
    run_id: str
    pipeline: Pipeline
    store: ArtifactStore
    stop_after: str | None
    address: str | None = None  # the cluster to join as its driver (GCS address), None: see make_executor
    rerun: frozenset[str] = frozenset()
    executor: Executor | None = None  # the cluster already joined (``joined_first``), None: started in run_stages


def prepare_run(
    spec: Any,
    config: Any,
    run_id: str,
    stop_after: str | None,
    address: str | None,
    rerun_from: str | None = None,
    no_cache: bool = False,
) -> PreparedRun:
    """The checks that need the run id and the DAG (the config's own are done), and the store; writes nothing.

    ``config`` has its stores written in (``checked_locations``).
    """
    check_run_id(run_id)
    pipeline = spec.build(config)
    check_stop_after(pipeline, stop_after)
    rerun = stages_to_rerun(pipeline, rerun_from, no_cache)
    store = open_store(config.run.artifact_uri)
    return PreparedRun(spec, config, run_id, pipeline, store, stop_after, address, rerun)


def joined_first(run: PreparedRun) -> PreparedRun:
    """``run`` with the Ray cluster it joins already joined, before anything of it is written; as it was otherwise.

    Why: the address answering (``cluster_fit.check_cluster``) does not mean the cluster lets
    this driver in (a head with token auth refuses one without its token), and joining after the
    run record and the MLflow run were written left, on every try, a run `relay runs` showed
    INTERRUPTED with no stages and an MLflow run marked FAILED. A refusal is bad input here (exit 2,
    nothing written). A run that starts its own local Ray keeps starting it beside MLflow's start
    (``execute``), and a run inside a Ray job joins the job's cluster as before, in ``run_stages``.
    """
    if run_locations.in_ray_job() or not cluster_join.joins_cluster(run.address, run.config.run):
        return run
    try:
        with interrupts_kept():  # Ctrl-C while Ray is imported and joins: never lost
            executor = make_executor(run.config.run, run.address)
    except KeyboardInterrupt:
        log.warning("interrupted while joining the Ray cluster; this attempt wrote nothing")
        raise
    except RelayError as exc:  # the cluster answered but would not take this driver: the message says what to fix
        raise InputError(str(exc)) from exc
    return dataclasses.replace(run, executor=executor)


@contextlib.contextmanager
def released_on_failure(run: PreparedRun) -> Iterator[None]:
    """Leave the joined cluster (``joined_first``) when what comes before the stages fails: they never get it."""
    try:
        yield
    except BaseException:
        if run.executor is not None:
            run.executor.shutdown()
        raise


@dataclass(frozen=True)
class RunEnd:
    """A run (or resume) that returned: its id, its store, and its parent MLflow run (None when the tracking
    store stopped answering in this attempt). Why: the Python API returns them, and had to find them again."""

    run_id: str
    store: ArtifactStore
    mlflow_run_id: str | None


def execute(run: PreparedRun, resume: bool) -> RunEnd:
    """Run (or resume) one pipeline run end to end and print its generation table.

    ``config`` has its stores written in (``with_locations``). Start-up and shutdown overlap
    what they can: MLflow (its import, the store's creation) runs on the tracker's thread
    while Ray starts; at the end Ray stops while that thread drains the last MLflow calls, and
    the table is printed after both, so that no line the tracker logs follows it. ``tracker.join``
    makes sure every MLflow write has landed before this returns, and only then are the copies
    made for it removed. While the stages run, their progress is shown from the run's progress
    board (docs/ENGINE.md, Progress).
    A tracking store that stopped answering is said in the closing lines instead of the browse hint,
    with the `relay resume` that fills the MLflow record in, and kept in the run's record (``record_tracking``).
    """
    config, run_id, stop_after = run.config, run.run_id, run.stop_after
    uri, store = config.tracking.uri, closing_store_option(run.store.uri)
    with resume_hint_until_the_stages_run(run) as handover:
        tracker = BackgroundTracker(mlflow_tracker(uri, config.tracking, pyfunc_loader=run.spec.pyfunc_loader))
        try:
            tracker.start_pipeline(run_id, config.name, config.model_dump(mode="json"), resume=resume)
            with tempfile.TemporaryDirectory(prefix="relay-copies-") as copies:
                run_stages(run, tracker, Path(copies), handover)
        finally:  # a failed or interrupted run's record says so too: `relay generations` reads it
            lost_at = record_tracking(run, tracker.inner)
    if lost_at is not None:  # the browse line would open a record that stops at lost_at
        print(f"\n{incomplete_tracking_note(run_id, uri, lost_at, store)}")
    if stop_after is not None:
        print(f"stopped after {stop_after}; finish with: relay resume {run_id}{store}")
    elif lost_at is None:
        print_browse_hint(config, uri, tracker.parent_run_id, run_id, store)
    return RunEnd(run_id, run.store, tracker.parent_run_id if lost_at is None else None)


def record_tracking(run: PreparedRun, tracker: Any) -> str | None:
    """Where the tracking store stopped answering in this attempt (None: it answered), kept in the run's record.

    An attempt that lost the store writes ``tracking.json`` (ledger.write_tracking); one that reached it
    throughout, after an attempt that had not, marks the record complete: its resume reattached to the
    MLflow runs and logged every stage the earlier attempt could not. A failure to write only warns.
    """
    lost_at = getattr(tracker, "lost_at", None)
    reached = getattr(tracker, "parent_run_id", None) is not None
    if lost_at is None and not (reached and tracking_lost_at(run.store, run.run_id) is not None):
        return lost_at
    try:
        write_tracking(run.store, run.run_id, lost_at, run.config.tracking.uri)
    except ArtifactError as exc:
        log.warning("could not record in run %s's record whether its MLflow record is complete: %s", run.run_id, exc)
    return lost_at


def closing_store_option(store_uri: str) -> str:
    """How the closing lines name the run's artifact store: ``store_option``, and always ``--artifact-uri`` in a Ray job.

    Why: a job gets the user's stores as RELAY_ARTIFACT_URI / MLFLOW_TRACKING_URI (`relay submit`), so a
    store named that way looked like the default, and the lines named the job's workspace instead: a folder
    in Ray's session directory (runtime_resources/.../relay-workspace) that the user never had.
    """
    if run_locations.in_ray_job():
        return f" --artifact-uri {shlex.quote(store_uri)}"
    return store_option(store_uri)


def incomplete_tracking_note(run_id: str, uri: str, lost_at: str, store: str = "") -> str:
    """The lines that replace the browse hint when the tracking store stopped answering during the run, or
    failed at its start (``START``: no MLflow run was made; ``START_CUT_SHORT``: one was, without its config
    and params), as the warning above says."""
    if lost_at in (START, START_CUT_SHORT):
        what = (
            f"the tracking store {uri} failed at the run's start (the warning above says why), so the run has "
            "no MLflow run"
            if lost_at == START
            else f"tracking the run failed part-way through its start with the tracking store {uri} (the warning "
            "above says at what step), so its MLflow run lacks its config and params, and Relay tracked no more of it"
        )
        again = "Once the store works again"
    else:
        what = f"the tracking store {uri} stopped answering at {lost_at}, and Relay stopped calling it"
        again = "Once the store answers again"
    return (
        f"The MLflow record of run {run_id} is incomplete: {what} (the run's outputs and ledger are in its "
        f"artifact store).\n{again}, fill the record in with:  relay resume {run_id}{store}  "
        "(completed stages are skipped)"
    )


def run_stages(run: PreparedRun, tracker: BackgroundTracker, copies: Path, handover: Handover) -> None:
    """The stages on the executor, the tracker closed as Ray stops, then the table printed (see ``execute``).

    ``copies``: where files of a remote store are copied for MLflow to log (Runner). Ctrl-C
    closes the MLflow runs KILLED, the status MLflow has for a run stopped from outside.
    ``handover`` is marked once the Runner, which says how to resume from then on, has the run.
    The status the tracker closes with is the run's (a ``RunStatus``), or MLflow's KILLED after a Ctrl-C.
    """
    status: str = RunStatus.FAILED
    executor, table = None, None
    try:
        # Ctrl-C while Ray is imported and started: never lost (the finally stops Ray); a failed start: the run FAILED
        with interrupts_kept(), failed_start_recorded(run.store, run.run_id):
            executor = run.executor or make_executor(run.config.run, run.address)
            executor.warm_up(run.pipeline)
        code = pipeline_code_versions(run.pipeline)
        log_code_versions(run.pipeline)
        runner = Runner(
            run.store,
            executor,
            tracker,
            code,
            run.config.seed,
            copies,
            store_option=store_option(run.store.uri),
            cluster_job=cluster_job(run),
        )
        with ProgressDisplay(executor.open_progress(run.run_id)):
            handover.runner_has_it = True
            summary = runner.run(run.pipeline, run.run_id, stop_after=run.stop_after, rerun=run.rerun)
        status = RunStatus.FINISHED if run.stop_after is None else RunStatus.STOPPED
        if run.stop_after is None:
            table = closing_table(run, summary.manifests)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM from Ray's start on (`relay stop`): Terminated
        if status is RunStatus.FAILED:  # not once the Runner returned: the run record already says how it ended
            status = "KILLED"
        raise
    finally:
        tracker.close(status)  # queued behind the stages' calls; MLflow drains them while Ray stops
        try:
            if executor is not None:
                executor.shutdown()
        finally:
            try:
                tracker.join()
            finally:  # after the tracker's last lines (registered, removed aliases): the table ends the output
                if table is not None:
                    print(table, flush=True)


def cluster_job(run: PreparedRun) -> bool:
    """Whether the run's resume hint names `relay submit --resume`: it runs inside a Ray job now, or was submitted
    as one (a local attempt of a submitted run is still resumed there).

    Not a run that joined a cluster (`relay run --address HOST:PORT`): it is no job, `relay resume RUN` rejoins
    its recorded cluster, and the submit hint it was given lacked the --address that command would need.
    """
    return run_locations.in_ray_job() or bool(resume_guard.recorded_job(run.store, run.run_id))


def closing_table(run: PreparedRun, manifests: Mapping[str, Any]) -> str:
    """The run's per-generation table under its title, from its own manifests (``summary_rows``).

    Printed once the tracker has drained: the lines MLflow's last calls log (a model registered,
    stale aliases removed) came after it, so the table was not the last thing a user saw.
    """
    rows = summary_rows(run.pipeline, manifests)
    return f"\nRun {run.run_id}: per-generation results on the test set\n{summary_table(rows, run.spec.summary)}"


@dataclass
class Handover:
    """Whether the Runner has taken the run over, and with it saying how to resume an interrupted one."""

    runner_has_it: bool = False


@contextlib.contextmanager
def resume_hint_until_the_stages_run(run: PreparedRun) -> Iterator[Handover]:
    """Say how to resume a run interrupted after its record was written but before its stages ran.

    Anywhere from the tracker's start to the Runner's (MLflow, Ray, the warm-up: seconds on a
    loaded machine) a Ctrl-C gets the same line; only Ray's start had one, and the Runner says it
    itself once it has the run.
    """
    handover = Handover()
    try:
        yield handover
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM from Ray's start on (a SystemExit: Terminated)
        if not handover.runner_has_it:
            log.warning(
                "interrupted before the stages started; resume with: relay resume %s%s%s",
                run.run_id,
                store_option(run.store.uri),
                resume_guard.cluster_job_hint(run.store, run.run_id),
            )
        raise


def summary_rows(pipeline: Any, manifests: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-generation rows from the run's own manifests: the numbers the parent run gets, without reading MLflow.

    Reading them back (one query per metric key) cost seconds at the end of every run.
    """
    rows: dict[int, dict[str, Any]] = {}
    for stage in pipeline.stages:
        manifest = manifests.get(stage.name)
        placed = parent_keys(stage.name, stage.generation)
        if manifest is None or placed is None:
            continue
        step, prefix = placed
        row = rows.setdefault(step, {"generation": step})
        row.update({f"{prefix}/{key}": value for key, value in manifest.metrics.items()})
    return [rows[g] for g in sorted(rows)]


def print_browse_hint(config: Any, uri: str, parent_run_id: str | None, run_id: str, store: str = "") -> None:
    """Commands that open this run's stores as it was tracked: its server, or `relay ui` on the right store.

    ``store``: how `relay generations` must name the artifact store (``common.store_option``).
    """
    if uri.startswith(("http://", "https://")):
        page = ui.server_run_page(uri, config.tracking.experiment, parent_run_id)
        print(f"\nBrowse the generations in MLflow: {page} (run {run_id})")
        print(f"Table again:  MLFLOW_TRACKING_URI={uri} relay generations {run_id}{store}")
        return
    workspace = None if run_locations.in_ray_job() else resolve_workspace(config.run)
    named = f" --workspace {shlex.quote(str(workspace))}" if workspace is not None else ""
    print(f"\nBrowse the generations in MLflow:  {ui_command(config, uri, workspace)}")
    print(f"  (or: mlflow ui --backend-store-uri {uri}) and open run {parent_run_id or run_id}")
    print(f"Table again:  relay generations {run_id}{store or named}")


def ui_command(config: Any, uri: str, workspace: Path | None) -> str:
    """`relay ui` for the run's store and experiment: --workspace serves only the workspace's own mlflow.db.

    ``workspace`` is None in a Ray job: its workspace is a folder of the job's working_dir, in Ray's
    session directory, which the user never had (and its driver's directory may be gone, with nothing
    to resolve a relative workspace against); the tracking URI is the store as the user gave it.
    """
    experiment = config.tracking.experiment
    shown = "" if experiment == TrackingSettings().experiment else f" --experiment {shlex.quote(experiment)}"
    if workspace is not None and uri == tracking_uri(RunSettings(workspace=str(workspace)), TrackingSettings()):
        return f"relay ui --workspace {shlex.quote(str(workspace))}{shown}"
    return f"MLFLOW_TRACKING_URI={shlex.quote(uri)} relay ui{shown}"


# --- commands --------------------------------------------------------------------------


def stages_to_rerun(pipeline: Any, rerun_from: str | None, no_cache: bool) -> frozenset[str]:
    """`--no-cache`: every stage; `--rerun-from S`: S and everything downstream of it; else none.

    An unknown stage is a PipelineError naming the valid ones (exit 2, before anything is written).
    """
    if no_cache:
        return frozenset(stage.name for stage in pipeline.stages)
    if rerun_from is None:
        return frozenset()
    return frozenset({pipeline.stage(rerun_from).name, *pipeline.downstream(rerun_from)})


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """`--rerun-from STAGE` / `--no-cache`, shared by `relay run` and `relay submit` (which forwards them)."""
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--rerun-from",
        metavar="STAGE",
        help="rerun this stage (e.g. g01/train) and everything downstream of it even if cached; reuse the rest",
    )
    cache.add_argument("--no-cache", action="store_true", help="rerun every stage; cached outputs are not read")


def cache_flags(args: argparse.Namespace) -> list[str]:
    """The cache flags of ``args`` as `relay run` arguments, for the job `relay submit` starts."""
    if args.no_cache:
        return ["--no-cache"]
    return ["--rerun-from", args.rerun_from] if args.rerun_from else []


def cmd_run(args: argparse.Namespace) -> int:
    """`relay run`: ``start_run``, exit 0 (a failure raises; SIGTERM: 143, ``ended_by_sigterm``)."""
    with ended_by_sigterm() as ended:
        start_run(args)
    return ended.code


@dataclass
class CommandEnd:
    """The exit code of a `relay run` or `relay resume` that returned or was stopped by SIGTERM."""

    code: int = 0


@contextlib.contextmanager
def ended_by_sigterm() -> Iterator[CommandEnd]:
    """A SIGTERM that stopped the block (``terminate_as_interrupt``) gives exit 143, the run recorded INTERRUPTED.

    Why: the SystemExit it raises (Ray's SystemExit(1) when it landed inside a Ray call) went out
    of the CLI, which exited 1, or 134 once the core worker's C++ handler had seen the signal, after
    tearing Ray, torch and MLflow down. Caught here, the CLI ends the process at once with 143, as
    after any run (``ends_process``).
    """
    ended = CommandEnd()
    try:
        yield ended
    except SystemExit:
        if not terminated_by_signal():
            raise
        ended.code = EXIT_TERMINATED


def start_run(args: argparse.Namespace) -> RunEnd:
    """Check everything (config, data, folders, store, run id, --stop-after), then write the run record and run."""
    origin = overrides_origin(args)
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args), origin=origin)
    address = cluster_address(args.address)
    check_executor_takes_address(args, config, address)
    cluster_fit.check_cluster(address, config.run, spec.build(config), args.config)
    config = checked_locations(config, args.config, address)
    run_id = new_run_id(config.name) if args.run_id is None else args.run_id
    run = prepare_run(spec, config, run_id, args.stop_after, address, args.rerun_from, args.no_cache)
    check_new_run(run.store, run_id)
    run = joined_first(run)
    joined = cluster_join.address_to_record(address, config.run)
    with released_on_failure(run):
        save_run_record(run.store, run.run_id, config, args.config, args.overrides, run.rerun, joined)
    rerun = f", {len(run.rerun)} rerun on request" if run.rerun else ""
    log.info("run %s: %d stages%s", run.run_id, len(run.pipeline.stages), rerun)
    return execute(run, resume=False)


def check_executor_takes_address(args: argparse.Namespace, config: Any, address: str | None) -> None:
    """Refuse (exit 2) a new run of ``run.executor=local`` given a cluster address (``--address``, ``run.ray_address``).

    Each problem names the override that set the executor or the address, as the config's own do;
    one about ``--address`` alone is the command line's (``cluster_join.local_executor_address_problems``).
    """
    problems = cluster_join.local_executor_address_problems(address, config.run)
    if not problems:
        return
    error = overridden(problems, args.overrides, args.config, overrides_origin(args))
    if all(problem.startswith("--address") for problem in problems):
        error = ConfigError(error.problems, "the command line")
    raise error


def cmd_resume(args: argparse.Namespace) -> int:
    """`relay resume`: ``resume_run``, exit 0 (a failure raises; SIGTERM: 143, ``ended_by_sigterm``)."""
    with ended_by_sigterm() as ended:
        resume_run(args)
    return ended.code


def resume_run(args: argparse.Namespace) -> RunEnd:
    """Finish a run from its record in the artifact store; the store it was found in is where it writes.

    It runs on the cluster the run joined (its record's, ``resume_address``) unless `--address` names another.
    A run whose driver may still run it is refused (``resume_guard.check_not_running``), and the run is
    claimed before Ray starts, so that a second resume meanwhile is refused too (``resume_guard.claimed``).
    """
    check_run_id(args.run_id)
    address = cluster_address(args.address)
    store = store_of(args)
    check_not_a_trial(args, store)
    spec, config = read_run_record(store, args.run_id, pipelines_of(args))
    cluster_join.check_resume_address(address, config.run, args.run_id)
    address = resume_address(address, store, args.run_id, config.run)
    if args.stop_after is not None:  # a stage the pipeline lacks is named as such, finished run or not
        check_stop_after(spec.build(config), args.stop_after)
    resume_guard.check_not_running(store, args.run_id, getattr(args, "driver_gone", False))
    check_resume_stop_after(store, args.run_id, args.stop_after)  # reads the ledger's status, which the claim sets
    check_not_moved(config, store.uri, args.run_id)
    with resume_guard.claimed(store, args.run_id):  # before anything slow: a second resume meanwhile is refused
        check_data_unchanged(spec, config, args.run_id, store.location(record_path(args.run_id, CONFIG_FILE)))
        config = checked_locations(
            with_locations(config, store.uri, tracking_uri(config.run, config.tracking)), None, address
        )
        run = prepare_run(spec, config, args.run_id, args.stop_after, address)
        run = dataclasses.replace(run, rerun=rerun_on_resume(store, args.run_id))  # what --no-cache had not reached
        cluster_fit.check_cluster(address, config.run, run.pipeline)
        run = joined_first(run)
    return execute(run, resume=True)


def check_not_a_trial(args: argparse.Namespace, store: ArtifactStore) -> None:
    """Refuse (exit 2) to resume a sweep's trial, saying what it is and its way on (``runs.trial_resume_problem``).

    Why: a trial keeps no config of its own, so the resume said there was no such run, though `relay runs` lists it.
    """
    sweeps = resolve_workspace(RunSettings(workspace=getattr(args, "workspace", None))) / "tune"
    given = (("--workspace", getattr(args, "workspace", None)), ("--artifact-uri", getattr(args, "artifact_uri", None)))
    options = "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value)
    problem = runs.trial_resume_problem(store, args.run_id, sweeps, options)
    if problem is not None:
        raise ConfigError([problem], "the command line")


def resume_address(
    given: str | None, store: ArtifactStore, run_id: str, settings: RunSettings | None = None
) -> str | None:
    """The cluster a resume joins: `--address`, else the one the run's record says it joined (checked to
    answer: exit 2 naming it and how to finish elsewhere), else None (``make_executor`` decides from
    ``settings``, the run's: RAY_ADDRESS holding a dashboard URL is refused here, with a resume's ways on).

    Inside a Ray job (`relay submit --resume`) the job's own cluster, whatever the record says.
    """
    if given is not None or run_locations.in_ray_job():
        return given
    settings = settings or RunSettings()
    recorded = recorded_ray_address(store, run_id)
    job = resume_guard.recorded_job(store, run_id)
    if recorded is None:
        job_address = None if not job else job.get("job_address", "")
        cluster_join.check_resume_ray_address(settings, run_id, job_address)
    if recorded is None and job:
        log.info(
            "run %s ran as a cluster job: resuming it %s; to resume it on its cluster:%s",
            run_id,
            cluster_join.resume_place(settings),
            resume_guard.cluster_job_hint(store, run_id).removeprefix(" (a cluster job:").removesuffix(")"),
        )
    if recorded is not None:
        cluster_join.check_recorded_cluster(recorded, run_id)
        log.info(
            "run %s joined the Ray cluster at %s: resuming there (pass --address HOST:PORT or --address local to "
            "run elsewhere)",
            run_id,
            recorded,
        )
    return recorded


def check_not_moved(config: Any, store_uri: str, run_id: str) -> None:
    """Refuse (exit 2) to resume a run in a workspace moved or copied since it started.

    MLflow keeps absolute paths in mlflow.db (each experiment's artifact location), so a resume
    in the new place would write the run's MLflow artifacts under the old one, creating it again;
    in a copy, the stages would land in the copy and the tracking in the original.
    """
    relocated = relocated_workspace(config, store_uri)
    if relocated is None:
        return
    old, new = relocated
    if moved_workspace(config, store_uri) is None:  # the old place is still there: a copy
        problem = (
            f"run {run_id} started in workspace {old}; {new} holds a copy of its record, which (like MLflow's "
            f"database) points at {old}, so resuming here would write the stages here and the tracking there. "
            f"Resume it where it started: relay resume {run_id} --workspace {old}"
        )
    else:
        problem = (
            f"run {run_id} started in workspace {old}, which has moved to {new}; its record (and MLflow's "
            f"database) keep the old absolute paths, so resuming here would write under {old}. "
            f"Move the workspace back to {old} to resume it (`relay runs` and `relay generations` read it here)"
        )
    raise ConfigError([problem], "the command line")


def cmd_validate(args: argparse.Namespace) -> int:
    """The checks `relay run` makes before writing (and, for a file with `tune:`, those of `relay tune`)."""
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args))
    check_executor_takes_address(args, config, None)
    pipeline = spec.build(config)
    problems = cluster_fit.local_ray_fit_problems(None, config.run, pipeline)  # `relay run`'s own lines
    if getattr(config, "tune", None) is not None:
        problems += _sweep_problems(args, spec, config, pipeline)
    if problems:
        raise ConfigError(problems, args.config)
    print(f"{args.config}: valid `{config.pipeline}` pipeline with {len(pipeline.stages)} stages")
    return 0


def _sweep_problems(args: argparse.Namespace, spec: Any, config: Any, pipeline: Pipeline) -> list[str]:
    """What `relay tune` would refuse in a file with `tune:`: its sweep's checks, then the size of its trials,
    each said to be the sweep's (``for_the_trials``)."""
    from orchestrator.cli.tune import local_trial_size_problems
    from orchestrator.tune.plan import inert_keys, sweep_check

    data = apply_overrides(load_yaml(args.config), args.overrides)
    base = {key: value for key, value in data.items() if key != "tune"}
    ranked_on, sweep_problems = sweep_check(base, config, config.tune, spec.build)
    swept = overridden(sweep_problems, args.overrides, args.config)
    sized = overridden(local_trial_size_problems(base, config, spec.build, pipeline), args.overrides, args.config)
    for line in inert_keys(base, config.tune.space, type(config), spec.build, ranked_on):  # as `relay tune` warns
        log.warning(line)
    return [*swept.problems, *(for_the_trials(problem, args.config, args.overrides) for problem in sized.problems)]


def for_the_trials(problem: str, path: str, overrides: Sequence[str] = ()) -> str:
    """A trial-size problem of `relay validate`, with what it is about: the sweep's trials, not `relay run`.

    Why: `relay validate smoke.yaml resources.train.workers=2` said `resources.train: a trial needs 2.1 CPUs ...`
    and exited 2, while `relay run smoke.yaml resources.train.workers=2` ran it: a trial's 0.1-CPU driver sits
    beside its stages only in `relay tune`, and `relay run` runs the base config once, without one. Said at the
    end, after the override that caused it, so that the line keeps the heading `relay tune` prints. The `relay
    run` it names carries the overrides that are not the sweep's (``overrides``): pasted, it runs this config.
    """
    command = shlex.join(["relay", "run", path, *(item for item in overrides if not item.startswith("tune."))])
    return (
        f"{problem}; this is for `relay tune` (each trial of the sweep): `{command}` runs the base config once and is "
        "not affected (to validate that alone, leave out the tune section: tune=null)"
    )


def register(commands: Any) -> None:
    """The run/resume/validate subcommands; run and resume end their process when done (``ends_process``)."""
    run = commands.add_parser("run", help="run a pipeline file", description="relay run CONFIG [key=value ...]")
    run.add_argument("config", help="the pipeline file (YAML), e.g. pipelines/configs/smoke.yaml")
    run.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides, e.g. crest.generations=2 train.steps=200"
    )
    run.add_argument("--stop-after", help="stop after this stage (e.g. g00/train); finish later with relay resume")
    run.add_argument("--run-id", help="name the run (default: NAME-DATE-TIME-XXXX)")
    add_location_overrides(run)
    add_cluster_address(run)
    add_cache_flags(run)
    run.set_defaults(handler=cmd_run, ends_process=True)

    about = "finish a run; completed stages are skipped (on a cluster: relay submit --resume RUN_ID)"
    resume = commands.add_parser("resume", help=about, description=about)
    resume.add_argument("run_id", help="the run to finish (`relay runs` lists them)")
    resume.add_argument(
        "--stop-after", help="go only as far as this stage (e.g. g01/train); finish later with relay resume"
    )
    add_workspace(resume)
    add_artifact_uri(resume)
    add_cluster_address(resume, resume=True)
    resume.add_argument(
        "--driver-gone",
        action="store_true",
        help="resume a run that says RUNNING with its driver on another machine, known to be gone (its machine "
        "lost, its process killed); without it such a run is refused, as its driver cannot be checked from here",
    )
    resume.set_defaults(handler=cmd_resume, ends_process=True)

    about = "check a pipeline file without running anything"
    validate = commands.add_parser("validate", help=about, description=about)
    validate.add_argument("config", help="the pipeline file (YAML), e.g. pipelines/configs/smoke.yaml")
    validate.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides to check with it, e.g. train.steps=200"
    )
    add_location_overrides(validate)
    validate.set_defaults(handler=cmd_validate)
