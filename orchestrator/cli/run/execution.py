"""A checked run executed: the executor joined or started, the tracker, the stages, the run's end.

This is the composition root of a run: it wires the chosen pipeline to the engine (store, executor,
runner) and to tracking (MLflow on a background thread). Apart from the commands (``pipeline``), which
check their input and build the ``PreparedRun`` this takes: nothing here runs before every check passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.cli.code_versions import log_code_versions, pipeline_code_versions
from orchestrator.cli.common import store_option
from orchestrator.cli.preflight import check_run_id, check_stop_after, open_store
from orchestrator.cli.records.generations import summary_table
from orchestrator.cli.run import cluster_join, resume_guard, run_locations
from orchestrator.cli.run.closing_lines import (
    closing_store_option,
    incomplete_tracking_note,
    print_browse_hint,
    summary_rows,
)
from orchestrator.config import RunSettings
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import Executor, LocalExecutor
from orchestrator.engine.ledger import (
    COMMAND_FILE,
    RunStatus,
    read_ledger,
    record_failed_start,
    record_path,
    this_driver,
    tracking_lost_at,
    write_ledger,
    write_tracking,
)
from orchestrator.engine.progress import ProgressDisplay
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.runner import Runner
from orchestrator.engine.signals import Terminated, interrupts_kept, one_more_interrupt_held
from orchestrator.errors import ArtifactError, ConfigError, InputError, RelayError
from orchestrator.tracking.background import BackgroundTracker
from orchestrator.tracking.common import sqlite_path
from orchestrator.tracking.mlflow_tracker import mlflow_tracker
from orchestrator.tracking.pipeline_run import END, START

log = logging.getLogger("relay")


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


TRACKING_GRACE_S = 30.0  # how long MLflow may take to finish the record of a run that ended, after a Ctrl-C or SIGTERM
NOTICE_AFTER_S = 1.0  # a wait for MLflow after a Ctrl-C longer than this is said


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
    check_rerun_before_stop(pipeline, rerun_from, stop_after)
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


def execute(run: PreparedRun, resume: bool, record: Callable[[], None] | None = None) -> RunEnd:
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
    ``record`` writes a new run's record, first thing inside the block that records a Ctrl-C: written
    before it, a Ctrl-C landing between the two (CI, once) stopped the run with neither a word nor a
    ledger, its record naming a dead driver.
    """
    config, run_id, stop_after = run.config, run.run_id, run.stop_after
    uri, store = config.tracking.uri, closing_store_option(run.store.uri)
    with resume_hint_until_the_stages_run(run, recorded=record is None) as handover:
        if record is not None:
            with released_on_failure(run):
                record()
            handover.recorded = True
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


def run_stages(run: PreparedRun, tracker: BackgroundTracker, copies: Path, handover: Handover) -> None:
    """The stages on the executor, the tracker closed as Ray stops, then the table printed (see ``execute``).

    ``copies``: where files of a remote store are copied for MLflow to log (Runner). Ctrl-C
    closes the MLflow runs KILLED, the status MLflow has for a run stopped from outside.
    ``handover`` is marked once the Runner, which says how to resume from then on, has the run.
    The status the tracker closes with is the run's (a ``RunStatus``), or MLflow's KILLED after a Ctrl-C.
    A Ctrl-C or SIGTERM once the Runner wrote how the run ended closes the MLflow runs as the ledger says, and MLflow
    is given ``TRACKING_GRACE_S`` to finish the record; past that (or at a second one) the run ends as one
    interrupted while it waits for MLflow (``tracking_cut_short_said``), a line saying what the record lacks.
    """
    status: str = RunStatus.FAILED
    executor, table, runner, stopped_by = None, None, None, None
    try:
        # Ctrl-C while Ray is imported and started: never lost (the finally stops Ray); the run's ledger says how it
        # ended (resume_hint_until_the_stages_run)
        with interrupts_kept():
            executor = run.executor or make_executor(run.config.run, run.address)
            executor.warm_up(run.pipeline)
        runner = stage_runner(run, executor, tracker, copies)
        with ProgressDisplay(executor.open_progress(run.run_id)):
            handover.runner_has_it = True
            summary = runner.run(run.pipeline, run.run_id, stop_after=run.stop_after, rerun=run.rerun)
        status = RunStatus.FINISHED if run.stop_after is None else RunStatus.STOPPED
        if run.stop_after is None:
            table = closing_table(run, summary.manifests)
    except (KeyboardInterrupt, SystemExit) as stopped:  # Ctrl-C; SIGTERM from Ray's start on (`relay stop`): Terminated
        if status is RunStatus.FAILED:  # not once the Runner returned: the run record already says how it ended
            status = (runner and runner.ended_as) or "KILLED"
        ended = status != "KILLED"  # the run had ended: MLflow gets the grace, not a wait without end
        stopped_by = stopped if ended and isinstance(stopped, KeyboardInterrupt | Terminated) else None
        raise
    finally:
        with tracking_cut_short_said(run, tracker, status):
            recorded = wind_down(tracker, status, executor, table, stopped_by=stopped_by)
        if not recorded:
            say_tracking_cut_short(run, tracker, status, stopped_by)


@contextlib.contextmanager
def tracking_cut_short_said(run: PreparedRun, tracker: BackgroundTracker, status: str) -> Iterator[None]:
    """A Ctrl-C or SIGTERM while a run that ended waits for MLflow (``wind_down``) is said in one line, the run's record
    marked incomplete.

    Why: on a workspace's first run MLflow creates its store (seconds of schema migrations) while the stages run,
    and a short run ends first; a Ctrl-C then came out of the tracker's join, after the Runner had said how the run
    ended, and `relay run` exited 130 without a word: the run FINISHED, with no MLflow run, and nothing said or
    recorded of it. The store itself is safe: built in a temporary file and linked into place whole
    (``tracking.common.ensure_sqlite_store``), so the next run creates it or finds it made. ``status`` "KILLED": the
    run was interrupted before, and that was said.
    """
    try:
        yield
    except (KeyboardInterrupt, Terminated) as stopped:
        if status == "KILLED":
            raise
        say_tracking_cut_short(run, tracker, status, stopped)
        raise


def say_tracking_cut_short(
    run: PreparedRun, tracker: BackgroundTracker, status: str, stopped: BaseException | None
) -> None:
    """The line of ``tracking_cut_short_said``, the tracker's record marked incomplete where it stopped.

    ``stopped``: the Ctrl-C ("interrupted") or SIGTERM ("terminated") that cut the wait short, as the grace notice
    before it words it.
    """
    inner, db = tracker.inner, sqlite_path(run.config.tracking.uri)
    with one_more_interrupt_held():
        if getattr(inner, "lost_at", "") is None:  # ``record_tracking`` keeps it in the run's record
            inner.lost_at = START if getattr(inner, "parent_run_id", None) is None else END
        creating = f" (its tracking store {db} was still being created)" if db and not db.exists() else ""
        log.warning(
            "%s while MLflow recorded run %s%s; the run itself ended %s, as its ledger says, but its "
            "MLflow record is incomplete: fill it in with: relay resume %s%s",
            stopped_as(stopped),
            run.run_id, creating, status, run.run_id, store_option(run.store.uri),
        )  # fmt: skip


def stage_runner(run: PreparedRun, executor: Executor, tracker: BackgroundTracker, copies: Path) -> Runner:
    """The Runner of ``run``'s stages on ``executor``, with the code version of each stage module (said in a line)."""
    code = pipeline_code_versions(run.pipeline)
    log_code_versions(run.pipeline)
    return Runner(
        run.store,
        executor,
        tracker,
        code,
        run.config.seed,
        copies,
        store_option=store_option(run.store.uri),
        cluster_job=cluster_job(run),
    )


def wind_down(
    tracker: BackgroundTracker,
    status: str,
    executor: Executor | None,
    table: str | None,
    stopped_by: BaseException | None = None,
) -> bool:
    """Close the tracker with ``status``, stop Ray while it drains, then print ``table`` (None: nothing) last.

    Each step runs even when the one before it raised, as the run's end must: the MLflow runs closed,
    Ray stopped, the tracker joined: until it is done, or for ``TRACKING_GRACE_S`` after a Ctrl-C or SIGTERM,
    ``stopped_by``, once the run had ended (MLflow may be waiting on a store another process creates). False
    when it was not done by then. A Ctrl-C or SIGTERM held while Ray stopped
    (``signals.signals_held_through_shutdown``) comes out of the executor's shutdown: the run had ended, so
    MLflow is given ``TRACKING_GRACE_S`` then too.
    """
    tracker.close(status)  # queued behind the stages' calls; MLflow drains them while Ray stops
    try:
        if executor is not None:
            executor.shutdown()
    except (KeyboardInterrupt, Terminated) as stop:  # held until Ray stopped: the run ended, MLflow gets the grace
        if stopped_by is None and status != "KILLED":
            stopped_by = stop
        raise
    finally:
        try:
            joined = tracker_done(tracker, stopped_by)
        finally:  # after the tracker's last lines (registered, removed aliases): the table ends the output
            if table is not None:
                print(table, flush=True)
    return joined


def tracker_done(tracker: BackgroundTracker, stopped_by: BaseException | None = None) -> bool:
    """Whether ``tracker`` made its last call: waited for until it has (True), or after a Ctrl-C or SIGTERM
    (``stopped_by``) for ``TRACKING_GRACE_S``.

    A wait of more than a moment is said, with how to stop it: the user pressed Ctrl-C (or a supervisor sent
    SIGTERM, ``stopped_by`` a ``Terminated``) and sees nothing else.
    """
    if stopped_by is None:
        return tracker.join()
    within = TRACKING_GRACE_S
    if tracker.join(min(NOTICE_AFTER_S, within)):
        return True
    again = "send SIGTERM again" if isinstance(stopped_by, Terminated) else "press Ctrl-C again"
    log.warning(
        "%s as the run ended: giving MLflow up to %.0f s more to finish its record; %s to stop now",
        stopped_as(stopped_by), within, again,
    )  # fmt: skip
    return tracker.join(within)


def stopped_as(stop: BaseException | None) -> str:
    """How the user's stop is said: "terminated" for a SIGTERM (``Terminated``), "interrupted" for a Ctrl-C."""
    return "terminated" if isinstance(stop, Terminated) else "interrupted"


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
    """Whether the run's record is written (there is a run to resume), and whether the Runner has taken the run
    over, and with it saying how to resume an interrupted one."""

    recorded: bool = True
    runner_has_it: bool = False


@contextlib.contextmanager
def resume_hint_until_the_stages_run(run: PreparedRun, recorded: bool = True) -> Iterator[Handover]:
    """Record how a run ended that stopped after its record was written but before its stages ran, and say how
    to resume it: INTERRUPTED after a Ctrl-C or SIGTERM, FAILED after a failure (``record_failed_start``).

    Anywhere from the tracker's start to the Runner's (MLflow, Ray, the warm-up: seconds on a
    loaded machine) a Ctrl-C gets the same line; the Runner records the run and says it itself
    once it has it. Why record it here: before the Runner's first write the run has no ledger,
    only its command record (a resume: its claim, RUNNING), naming this process as its driver.
    Where this process lives on (a notebook's kernel running ``relay.run``) the run read STARTING
    (or RUNNING) for as long as it lived, and `relay resume` was refused, told to kill the kernel.
    """
    handover, started = Handover(recorded=recorded), datetime.now(UTC).isoformat(timespec="seconds")
    try:
        yield handover
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM from Ray's start on (a SystemExit: Terminated)
        if not recorded_now(run, handover):
            log.warning("interrupted before run %s was recorded; nothing to resume", run.run_id)
        elif not handover.runner_has_it:
            recorded_unless_lost(run, lambda: record_interrupted_start(run.store, run.run_id, started))
            log.warning(
                "interrupted before the stages started; resume with: relay resume %s%s%s",
                run.run_id,
                store_option(run.store.uri),
                resume_guard.cluster_job_hint(run.store, run.run_id),
            )
        raise
    except Exception as exc:
        if not handover.runner_has_it and recorded_now(run, handover):
            why = str(exc)
            recorded_unless_lost(run, lambda: record_failed_start(run.store, run.run_id, why, started))
        raise


def recorded_now(run: PreparedRun, handover: Handover) -> bool:
    """Whether the run has a record to resume: it had one, or its command record has been written by now (the
    write may have ended just before what stopped it)."""
    if handover.recorded:
        return True
    try:
        return run.store.read_record(record_path(run.run_id, COMMAND_FILE)) is not None
    except ArtifactError:
        return False


def recorded_unless_lost(run: PreparedRun, record: Callable[[], None]) -> None:
    """Write how the run ended (``record``); a store that cannot take it only warns: what stopped the run is
    what the user must see."""
    try:
        record()
    except ArtifactError as lost:
        log.warning("could not record how run %s ended in its ledger: %s", run.run_id, lost)


def record_interrupted_start(store: ArtifactStore, run_id: str, started: str) -> None:
    """Record the run INTERRUPTED by this process, before its stages: `relay resume` goes on from its ledger.

    An earlier attempt's ledger keeps its stages and its start (``started`` is this attempt's), as
    ``record_failed_start`` keeps them for a failure.
    """
    earlier = read_ledger(store, run_id)
    data = dict(earlier) if isinstance(earlier, dict) else {"run_id": run_id, "stages": {}}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    data.update(
        {
            "status": RunStatus.INTERRUPTED,
            "started": data.get("started") or started,
            "updated": now,
            "driver": this_driver(),
        }
    )
    write_ledger(store, run_id, data)


def check_rerun_before_stop(pipeline: Any, rerun_from: str | None, stop_after: str | None) -> None:
    """``--rerun-from S`` must name a stage that ``--stop-after T`` runs (T or a stage T needs), or exit 2.

    Why: the run stopped before S, so the flag did nothing and said nothing, and a later `relay resume`
    does not carry it (S took the cache hit): the user believed S had been recomputed.
    """
    if rerun_from is None or stop_after is None or rerun_from in {stop_after, *pipeline.upstream(stop_after)}:
        return
    raise ConfigError(
        [
            f"--rerun-from: {rerun_from} would not run, since --stop-after {stop_after} stops the run after "
            f"{stop_after} and the stages it needs, so nothing would be rerun; stop after {rerun_from} or a stage "
            "that needs it, or leave --stop-after out"
        ],
        "the command line",
    )


def stages_to_rerun(pipeline: Any, rerun_from: str | None, no_cache: bool) -> frozenset[str]:
    """`--no-cache`: every stage; `--rerun-from S`: S and everything downstream of it; else none.

    An unknown stage is a PipelineError naming the valid ones (exit 2, before anything is written).
    """
    if no_cache:
        return frozenset(stage.name for stage in pipeline.stages)
    if rerun_from is None:
        return frozenset()
    return frozenset({pipeline.stage(rerun_from).name, *pipeline.downstream(rerun_from)})
