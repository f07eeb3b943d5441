"""The sweep itself: the search, the Tuner, fitting it on Ray, and closing its trials as they ended.

``--resume`` is ``Tuner.restore``: finished trials keep their results and are not rerun;
unfinished ones continue after their last reported generation. Ray Tune does not save
scheduler state, so a resumed ASHA starts with empty rungs and compares only the trials it
runs after the restore. The trials it restores start no more than the sweep's concurrency at
once, as a new sweep's (``tune_config``, ``ConcurrencyCap``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.config import TuneSettings, validate_config
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RunStatus, read_ledger, write_ledger
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.ray_start_log import filtered
from orchestrator.engine.signals import interrupts_kept
from orchestrator.errors import ArtifactError, ConfigError, RelayError
from orchestrator.tracking.common import TAG_STATUS
from orchestrator.tracking.sweeps import SweepTracker
from orchestrator.tune.console_filters import (
    CONTROLLER_LOGGER,
    no_fetch_failures,
    no_restore_advice,
    no_reuse_actors_advice,
    one_line_trial_failures,
)
from orchestrator.tune.plan import SweepPlan, fit_concurrency, left_out_note
from orchestrator.tune.schedulers import ConcurrencyCap, make_scheduler
from orchestrator.tune.space import param_space, shuffled_grid, total_trials
from orchestrator.tune.trial import run_trial
from orchestrator.tune.trial_rows import (
    FAILED,
    OPEN,
    TrialRow,
    in_start_order,
    mlflow_status,
    relay_status,
    trial_row,
    tune_configs,
)

logger = logging.getLogger(__name__)

TRIAL_RETRIES = 2


def make_search(settings: TuneSettings, seed: int, concurrency: int) -> Any:
    """Random (Ray's variant generator, seeded) or Optuna's TPE, each holding ``concurrency`` trials at once.

    The variant generator limits itself (TuneConfig's max_concurrent_trials
    is ignored for it); Optuna goes through a ConcurrencyLimiter. Grid points
    reach the generator as ``points_to_evaluate`` in a seeded random order
    (``shuffled_grid``), not in the grid's nested-loop order.
    """
    if settings.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(metric=settings.metric, mode=settings.mode, seed=seed), concurrency)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(
        points_to_evaluate=shuffled_grid(settings, seed), random_state=seed, max_concurrent=concurrency
    )


def make_tuner(plan: SweepPlan, concurrency: int, resume: bool) -> Any:
    """A new Tuner, or the interrupted one restored from the sweep's storage (finished trials stay finished)."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, plan=plan, mlflow_level=mlflow_level()), {"cpu": plan.settings.trial_cpus}
    )
    if resume:  # the restored sweep keeps the RunConfig it started with
        os.environ.setdefault(NO_AUTO_LOGGERS, "1")
        with resume_failure_said(plan, resume):
            return tune.Tuner.restore(str(plan.experiment_path), trainable, resume_unfinished=True, resume_errored=True)
    run_config = sweep_run_config(plan)
    # Grid keys stay in the space (Ray checks presets against it); each preset fills them, so none expands.
    return tune.Tuner(
        trainable,
        param_space=param_space(plan.settings.space),
        tune_config=tune_config(plan.settings, plan.generations, concurrency),
        run_config=run_config,
    )


def tune_config(settings: TuneSettings, generations: int, concurrency: int) -> Any:
    """The search and the scheduler, each holding the sweep to ``concurrency`` trials at once.

    Ray Tune pickles them in the sweep's tuner.pkl, and ``Tuner.restore`` (``--resume``) takes them
    from there: the restored sweep keeps the cap it started with (``ConcurrencyCap``: the trials
    the resume restores start only as slots free).
    """
    from ray import tune

    trials = total_trials(settings)
    search = make_search(settings, settings.seed, concurrency)  # plan_sweep has filled in the config's seed
    scheduler = make_scheduler(settings, generations, trials, concurrency, release_slot=search.on_trial_complete)
    # num_samples = every trial: each grid point is one preset (``shuffled_grid``); without a grid, num_samples itself
    return tune.TuneConfig(
        metric=settings.metric,
        mode=settings.mode,
        num_samples=trials,
        scheduler=ConcurrencyCap(scheduler, concurrency),
        search_alg=search,
    )


def mlflow_level() -> str:
    """The level of the driver's MLflow loggers (WARNING, INFO with -v), for its trials to take (``run_trial``).

    Why: a trial on another node of a cluster does not inherit the driver's environment, so each
    printed MLflow's INFO lines (the system-metrics monitor's, ten a trial) into the driver's output.
    """
    return logging.getLevelName(logging.getLogger("mlflow").getEffectiveLevel())


def sweep_run_config(plan: SweepPlan) -> Any:
    """Where Ray Tune keeps the sweep's state (``--output``/ray), its retries, and its result files.

    Sets NO_AUTO_LOGGERS (read when the sweep is fitted): the loggers are ``result_file_loggers``.
    """
    from ray import tune

    os.environ.setdefault(NO_AUTO_LOGGERS, "1")
    return tune.RunConfig(
        name=plan.name,
        storage_path=str(Path(plan.output) / "ray"),
        verbose=1,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        # A trial whose worker dies (memory pressure, a start-up timeout) goes on from its last generation:
        # its checkpoint is its schedule and the generations it ran are cache hits, so a retry costs little.
        failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
        callbacks=result_file_loggers(),
    )


NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"  # Ray Tune's switch: "1" adds no logger it was not given


def result_file_loggers() -> list[Any]:
    """Ray Tune's CSV and JSON result files, which its ResultGrid reads back (the trials table), and no TensorBoard files.

    Ray Tune adds a TensorBoard logger beside them unless NO_AUTO_LOGGERS is "1", and then
    prints `tensorboard --logdir /tmp/ray/session_.../driver_artifacts` at the start of every
    sweep: a folder under Ray's temporary session that a sweep's metrics never need, since they
    are in MLflow (`relay ui`) and in the sweep's trials.csv.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


def can_resume(plan: SweepPlan) -> bool:
    """Whether Ray Tune saved the sweep's state (``experiment_state-*.json``), which ``Tuner.restore`` goes on from.

    Why not ``Tuner.can_restore`` alone: it looks for tuner.pkl, which ``tune.Tuner(...)`` writes as
    soon as it is built, before Ray Tune saves any state. A start cut off then (a Ctrl-C as Ray started,
    a kill) was taken for a sweep: its `--resume` ended in Ray Tune's traceback (it restarted the sweep
    from tuner.pkl alone and failed on the grid: KeyError: 'train.lr'), and a new start was refused.
    """
    from ray import tune
    from ray.tune.execution.tune_controller import TuneController

    path = plan.experiment_path
    saved = path.is_dir() and any(path.glob(TuneController.CKPT_FILE_TMPL.format("*")))
    return saved and tune.Tuner.can_restore(str(path))


PLAN_PARTS = {"build": "build function", "config_model": "config model"}  # what a pipeline spec gives a plan


def check_sendable(plan: SweepPlan) -> None:
    """Exit 2 (before anything is written) when the plan cannot be pickled for the trials, naming what holds it back.

    Why: every trial runs in a Ray worker, which gets the plan, the pipeline spec's build function and
    config model with it, pickled. A plug-in's build that holds a lock, an open file or a client (a
    closure, a ``functools.partial`` over one) could not be, and the sweep ended in Ray's traceback
    (``TypeError: cannot pickle '_thread.lock' object``) once its folder and MLflow run were made.
    """
    from ray import cloudpickle

    try:
        cloudpickle.dumps(plan)
    except Exception as exc:  # pickling raises TypeError, PicklingError, AttributeError... from any object inside
        part = next((name for name in PLAN_PARTS if not _pickles(getattr(plan, name))), None)
        what = f"its {PLAN_PARTS[part]}" if part else "its sweep plan"
        raise ConfigError(
            [
                f"pipeline {plan.pipeline_kind or plan.pipeline_name}: {what} cannot be sent to Ray Tune's trials ({error_line(exc)}); "
                "each trial runs in a Ray worker that receives it pickled: define it at the top level of an "
                "importable module, holding no lock, open file or client (open those inside the stage bodies)"
            ],
            "the pipeline's spec",
        ) from exc


def _pickles(value: Any) -> bool:
    from ray import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


def sweeps_in(output: Path) -> list[str]:
    """The names of the sweeps whose Ray Tune state a sweep folder holds (``OUTPUT/ray/NAME``), sorted."""
    from ray import tune

    folder = output / "ray"
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and tune.Tuner.can_restore(str(entry)))


def _sized_tuner(plan: SweepPlan, resume: bool) -> tuple[Any, int]:
    """The sweep's Tuner, as many trials at once as the Ray cluster has room for; and the number of trials."""
    import ray

    trials = total_trials(plan.settings)
    probe = validate_config(plan.config_model, plan.base)
    concurrency = fit_concurrency(
        ray.cluster_resources(),
        plan.build(probe),
        plan.settings.trial_cpus,
        plan.settings.max_concurrent_trials,
        trials,
    )
    logger.info(
        "sweep %s: %d trial(s), %d at once, %d generation(s) each", plan.name, trials, concurrency, plan.generations
    )
    note = left_out_note(plan)
    if note:
        logger.info("%s", note)
    warning = lone_population_warning(plan.settings, concurrency, trials, ray.cluster_resources().get("CPU", 0.0))
    if warning:
        logger.warning("%s", warning)
    return make_tuner(plan, concurrency, resume), trials


def lone_population_warning(settings: TuneSettings, concurrency: int, trials: int, cpus: float) -> str | None:
    """Why a PBT / PB2 sweep that runs one trial at a time perturbs nothing, and what to change; None otherwise.

    Ray Tune's PBT exploits only among trials still running (finished ones are left out of its
    quantiles), so with one trial at a time no trial ever has another to copy: the sweep is a
    plain random search that pays for checkpoints. On 2 cores a trial's driver and its widest
    stage fill the machine.
    """
    if not settings.population_based or concurrency > 1 or trials < 2:
        return None
    limit = (
        "tune.max_concurrent_trials=1"
        if settings.max_concurrent_trials == 1
        else f"Ray's {cpus:g} CPU(s) fit one trial: its driver's tune.trial_cpus beside its widest stage"
    )
    return (
        f"tune.scheduler: {settings.scheduler} runs 1 trial at a time here ({limit}), so no trial ever has a running "
        "one to copy and it will perturb nothing (Ray Tune's PBT exploits only among running trials); give the sweep "
        "room for 2 or more trials at once (more CPUs: run.num_cpus or a cluster with --address; a lower "
        "tune.trial_cpus or smaller stage resources; tune.max_concurrent_trials unset), or use scheduler asha or sha"
    )


def run_sweep(plan: SweepPlan, resume: bool, sweep_tracker: SweepTracker) -> tuple[list[TrialRow], bool]:
    """Start (or restore) the sweep on Ray and fit it; returns the trials table and whether every trial ended."""
    session = None
    try:
        with interrupts_kept():  # a Ctrl-C while Ray and Ray Tune are imported and started is never lost
            session = RayExecutor(  # owns ray.init, dashboard on
                address=plan.ray_address, num_cpus=plan.num_cpus, object_store_memory=plan.object_store_memory
            )
            with new_sweep_failure_said(plan, resume):
                tuner, trials = _sized_tuner(plan, resume)
        with no_restore_advice(), no_reuse_actors_advice(), no_fetch_failures(), one_line_trial_failures():
            try:
                with resume_failure_said(plan, resume), new_sweep_failure_said(plan, resume):
                    grid = tuner.fit()  # Ray Tune takes Ctrl-C from here: it saves the sweep's state and returns
            except (SystemExit, SweepFailed):  # SIGTERM (a job's stop waits 3 s), or Ray Tune stopped:
                sweep_tracker.close_open_trials({TAG_STATUS: RunStatus.INTERRUPTED})  # --resume goes on with them
                raise
        rows = in_start_order([trial_row(plan, result, sampled) for result, sampled in zip(grid, tune_configs(grid))])
    finally:
        if session is not None:
            session.shutdown()
    say_where_errors_are(rows)
    done = len(rows) >= trials and all(row.status not in OPEN for row in rows)
    store = ArtifactStore(plan.store_uri)
    for row in rows:
        if row.status in OPEN:
            mark_interrupted(store, row.run_id)
        sweep_tracker.close_trial(
            row.run_id,
            mlflow_status(row.status),
            {
                "relay.tune.status": row.status,
                "relay.tune.generations": str(len(row.by_generation)),
                TAG_STATUS: relay_status(row.status),
            },
            interrupted=row.status in OPEN,
        )
    return rows, done


@contextlib.contextmanager
def resume_failure_said(plan: SweepPlan, resume: bool) -> Iterator[None]:
    """On `--resume`, an error Ray Tune raises as it restores or goes on with the sweep becomes one message naming
    the sweep's saved state, why Ray Tune could not go on from it, and the ways on (RelayError: exit 1).

    Why: a restore Ray Tune could not carry out ended `relay tune --resume` in Ray Tune's raw
    tracebacks (its unreadable state's, then some 40 lines of its frames ending in ``KeyError:
    'train.lr'`` as it restarted the sweep from tuner.pkl), naming neither the sweep nor what to do.
    ``relay -v`` keeps the tracebacks. A new sweep's errors pass as they are: no saved state is involved.
    """
    if not resume:
        yield
        return
    unreadable = _RestoreFailureKept()
    try:
        with filtered(unreadable, CONTROLLER_LOGGER):  # Ray Tune's controller restores the sweep
            yield
    except RelayError:
        raise
    except Exception as exc:
        logger.debug("Ray Tune's traceback of the failed resume of sweep %s", plan.name, exc_info=True)
        cause = unreadable.cause or exc
        raise RelayError(
            f"sweep {plan.name}: Ray Tune could not go on from the sweep's saved state at {plan.experiment_path}: "
            f"{type(cause).__name__}: {cause}; `relay -v tune ...` shows Ray Tune's traceback. To run the sweep "
            "afresh, start it without resuming under another tune.name or in another --output DIR"
        ) from exc


class SweepFailed(RelayError):
    """Ray Tune stopped a new sweep with an error of its own, outside any trial (exit 1); the command adds the way on.

    ``resumable``: whether Ray Tune saved the sweep's state before it stopped (``can_resume``), so that
    `relay tune --resume` goes on from there; otherwise the sweep starts again. ``traceback_at``: the
    file keeping Ray Tune's traceback (None when it could not be written).
    """

    def __init__(self, plan: SweepPlan, cause: BaseException, traceback_at: Path | None, resumable: bool) -> None:
        self.name = plan.name
        self.state_at = plan.experiment_path
        self.cause = cause
        self.traceback_at = traceback_at
        self.resumable = resumable
        kept = f" (traceback: {traceback_at})" if traceback_at else ""
        super().__init__(f"sweep {plan.name} failed: Ray Tune stopped it: {error_line(cause)}{kept}")


SWEEP_TRACEBACK = Path("errors") / "sweep.txt"  # in the sweep's folder, as a run keeps runs/RUN/errors/STAGE.txt


@contextlib.contextmanager
def new_sweep_failure_said(plan: SweepPlan, resume: bool) -> Iterator[None]:
    """An error Ray Tune raises as it sets up or fits a new sweep becomes one ``SweepFailed``, its traceback kept in
    the sweep's folder (``SWEEP_TRACEBACK``).

    Why: such an error (a TuneError of its controller, a search or scheduler that raised, a trainable
    Ray could not send, a full disk under its session folder) reached the user as Ray Tune's raw
    traceback, some 40 lines naming neither the sweep, nor whether its state was saved, nor what to run
    next. Relay's own errors pass as they are; a `--resume`'s are ``resume_failure_said``'s.
    """
    if resume:
        yield
        return
    try:
        yield
    except RelayError:
        raise
    except Exception as exc:
        logger.debug("Ray Tune's traceback of sweep %s", plan.name, exc_info=True)
        raise SweepFailed(plan, exc, kept_traceback(Path(plan.output), exc), can_resume(plan)) from exc


def kept_traceback(output: Path, exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback to the sweep's ``SWEEP_TRACEBACK``; None when it cannot be written (a full disk)."""
    path = output / SWEEP_TRACEBACK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
    except OSError as error:
        logger.warning("sweep traceback not kept at %s: %s", path, error)
        return None
    return path


def error_line(exc: BaseException) -> str:
    """``Type: message`` of the error at the bottom of ``exc``'s chain, on one line.

    Why the bottom: Ray Tune wraps what its controller caught in a TuneError holding the whole
    formatted traceback as its message; the error that stopped it is the chain's last (its cause).
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return _shortened(lines[-1])  # a traceback as the message: its last line is the error, type included
    return _shortened(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


def _shortened(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


RESTORE_FAILED = "Failed to restore the run state."  # its error when it cannot read the saved state; it then restarts


class _RestoreFailureKept(logging.Filter):
    """Keeps the error behind Ray Tune's `Failed to restore the run state.`, for Relay's message to name; the line
    itself stays on the console, its traceback only with ``relay -v``."""

    def __init__(self) -> None:
        super().__init__()
        self.cause: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == RESTORE_FAILED and record.exc_info:
            self.cause = record.exc_info[1]
            if not logger.isEnabledFor(logging.DEBUG):
                record.exc_info, record.exc_text = None, None
        return True


def say_where_errors_are(rows: Sequence[TrialRow]) -> None:
    """Name the error file in the sweep's folder of each trial that failed (retried or not), and why one that
    ended failed did.

    Why: Ray Tune prints each failed trial's `error.txt` under /tmp/ray/session_*, its temporary
    session folder; the copy that lasts is in the trial's folder under the sweep's `ray/`. Why the
    cause: the sweep's last lines said a trial failed, and its reason was only in the file or far up.
    """
    for row in rows:
        if row.error_file is not None:
            ended = "failed" if row.status == FAILED else "failed at least once (retried)"
            cause = f" ({row.error})" if row.status == FAILED and row.error else ""
            logger.warning("trial %s %s%s; its error is in %s", row.trial_id, ended, cause, row.error_file)


# What a cut-off trial's ledger says: RUNNING mid-generation, STOPPED between two.
OPEN_LEDGER_STATES = (RunStatus.RUNNING, RunStatus.STOPPED)


def mark_interrupted(store: ArtifactStore, run_id: str) -> None:
    """Rewrite the ledger of a trial the sweep's Ctrl-C cut off as INTERRUPTED, as a `relay run`'s reads after one.

    Why: a trial runs each generation as a run that stops after the generation's metric stage, so
    a trial cut off between two generations kept the ledger status STOPPED, and `relay runs` listed
    it STOPPED (meant for `--stop-after` and a scheduler's early stop), not INTERRUPTED; one cut off
    mid-stage on another machine read RUNNING for good. `relay tune --resume` rewrites it as it
    goes on. A ledger that cannot be read or written is left: the sweep's results do not depend on it.
    """
    try:
        ledger = read_ledger(store, run_id)
        if not isinstance(ledger, dict) or ledger.get("status") not in OPEN_LEDGER_STATES:
            return
        ledger["status"] = RunStatus.INTERRUPTED
        write_ledger(store, run_id, ledger)
    except (ArtifactError, OSError) as exc:
        logger.warning("trial %s: its ledger still says how far it got, not INTERRUPTED: %s", run_id, exc)
