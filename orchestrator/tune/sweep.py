"""The sweep itself: the search, the Tuner, fitting it on Ray, and the table of its trials.

``--resume`` is ``Tuner.restore``: finished trials keep their results and are not rerun;
unfinished ones continue after their last reported generation. Ray Tune does not save
scheduler state, so a resumed ASHA starts with empty rungs and compares only the trials it
runs after the restore.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import TuneSettings, validate_config
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import DONE_STATES, RunStatus, read_ledger, write_ledger
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.ray_start_log import filtered
from orchestrator.engine.signals import interrupts_kept
from orchestrator.errors import ArtifactError
from orchestrator.tracking.common import TAG_STATUS
from orchestrator.tracking.report import text_table
from orchestrator.tracking.sweeps import SweepTracker
from orchestrator.tune.plan import SweepPlan, fit_concurrency, left_out_note
from orchestrator.tune.schedulers import make_scheduler
from orchestrator.tune.space import clip_values, param_space, shuffled_grid, total_trials
from orchestrator.tune.trial import TrialState, run_trial

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
        return tune.Tuner.restore(str(plan.experiment_path), trainable, resume_unfinished=True, resume_errored=True)
    settings = plan.settings
    trials = total_trials(settings)
    search = make_search(settings, settings.seed, concurrency)  # plan_sweep has filled in the config's seed
    scheduler = make_scheduler(settings, plan.generations, trials, concurrency, release_slot=search.on_trial_complete)
    # num_samples = every trial: each grid point is one preset (``shuffled_grid``); without a grid, num_samples itself
    tune_config = tune.TuneConfig(
        metric=settings.metric, mode=settings.mode, num_samples=trials, scheduler=scheduler, search_alg=search
    )
    run_config = sweep_run_config(plan)
    # Grid keys stay in the space (Ray checks presets against it); each preset fills them, so none expands.
    return tune.Tuner(
        trainable, param_space=param_space(settings.space), tune_config=tune_config, run_config=run_config
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
    from ray import tune

    return plan.experiment_path.exists() and tune.Tuner.can_restore(str(plan.experiment_path))


def sweeps_in(output: Path) -> list[str]:
    """The names of the sweeps whose Ray Tune state a sweep folder holds (``OUTPUT/ray/NAME``), sorted."""
    from ray import tune

    folder = output / "ray"
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and tune.Tuner.can_restore(str(entry)))


@dataclass
class TrialRow:
    """One line of the trials table."""

    trial_id: str
    run_id: str
    values: dict[str, Any]
    by_generation: dict[int, float]
    status: str  # completed | stopped early | error | interrupted | unfinished
    started: int | None = None  # the trial's number in the order Ray Tune started trials (None: not known)
    error_file: str | None = None  # its error.txt in the sweep's folder, when it failed (and maybe was retried)

    def final(self) -> float | None:
        return self.by_generation[max(self.by_generation)] if self.by_generation else None


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


POPULATION_SCHEDULERS = ("pbt", "pb2")


def lone_population_warning(settings: TuneSettings, concurrency: int, trials: int, cpus: float) -> str | None:
    """Why a PBT / PB2 sweep that runs one trial at a time perturbs nothing, and what to change; None otherwise.

    Ray Tune's PBT exploits only among trials still running (finished ones are left out of its
    quantiles), so with one trial at a time no trial ever has another to copy: the sweep is a
    plain random search that pays for checkpoints. On 2 cores a trial's driver and its widest
    stage fill the machine.
    """
    if settings.scheduler not in POPULATION_SCHEDULERS or concurrency > 1 or trials < 2:
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
            tuner, trials = _sized_tuner(plan, resume)
        with no_restore_advice(), no_reuse_actors_advice(), no_fetch_failures():
            try:
                grid = tuner.fit()  # Ray Tune takes Ctrl-C from here: it saves the sweep's state and returns
            except SystemExit:  # SIGTERM: Ray's handler raises it; close the trials first, a job's stop waits 3 s
                sweep_tracker.close_open_trials({TAG_STATUS: RunStatus.INTERRUPTED})
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
            _mlflow_status(row.status),
            {
                "relay.tune.status": row.status,
                "relay.tune.generations": str(len(row.by_generation)),
                TAG_STATUS: _relay_status(row.status),
            },
            interrupted=row.status in OPEN,
        )
    return rows, done


RAY_TUNE_LOGGER = "ray.tune.tune"  # the logger of Ray Tune's run loop (its module's name)
RESTORE_ADVICE = "Resume experiment with:"  # Ray Tune's warning after a Ctrl-C: "... Tuner.restore(path=...)"


class _WithoutRestoreAdvice(logging.Filter):
    """Drops Ray Tune's own way on after a Ctrl-C (a warning); its errors and other warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or RESTORE_ADVICE not in record.getMessage()


@contextlib.contextmanager
def no_restore_advice() -> Iterator[None]:
    """Keep Ray Tune's `Resume experiment with: Tuner.restore(path=..., trainable=...)` off the console while it fits.

    Why: on a Ctrl-C Ray Tune logs that line just before Relay prints `continue it with: relay tune
    ... --resume`, two conflicting ways on, and Tuner.restore is not one a Relay user can take. Ray
    Tune logs it unconditionally (no verbosity hides it), so a filter on its run loop's logger
    drops that one warning; its "Stop signal received ... Press CTRL+C to skip" line stays.
    """
    with filtered(_WithoutRestoreAdvice(), RAY_TUNE_LOGGER):
        yield


ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"  # the logger of Ray Tune's results reader
FETCH_FAILURE = "Failed to fetch metrics for"  # its warning for a trial with no result file yet


class _WithoutFetchFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        missing = message.startswith(FETCH_FAILURE) and all(
            "FileNotFoundError" in line for line in message.splitlines()[1:] if line.startswith("- ")
        )
        return record.levelno >= logging.ERROR or not missing


@contextlib.contextmanager
def no_fetch_failures() -> Iterator[None]:
    """Keep Ray Tune's `Failed to fetch metrics for 1 trial(s): FileNotFoundError(... both result.json and
    progress.csv were not found ...)` warning off the console while it fits.

    Why: a resumed sweep whose interrupt caught a trial before its first generation printed it, a
    traceback-like line about a trial that simply has no result yet; Relay's trials table shows that
    trial `unfinished`, and a trial that failed is named with its error file (``say_where_errors_are``).
    Only a warning all of whose trials lack their files is dropped: another failure (a result file that
    cannot be parsed or read) is a problem of the sweep's folder, and stays on the console.
    """
    with filtered(_WithoutFetchFailures(), ANALYSIS_LOGGER):
        yield


REUSE_ACTORS_ADVICE = "Consider boosting PBT performance by enabling `reuse_actors`"  # Ray Tune's UserWarning


@contextlib.contextmanager
def no_reuse_actors_advice() -> Iterator[None]:
    """Keep Ray Tune's `UserWarning: Consider boosting PBT performance by enabling reuse_actors ...` off the console.

    Why: Ray Tune warns so under every PBT sweep whose Tuner does not reuse actors, and the advice is
    about the Tuner's own settings and a Trainable's `reset_config`, none of which a Relay user can
    change (a trial's actor is a fresh pipeline driver by design).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(REUSE_ACTORS_ADVICE), category=UserWarning)
        yield


def say_where_errors_are(rows: Sequence[TrialRow]) -> None:
    """Name the error file in the sweep's folder of each trial that failed (retried or not).

    Why: Ray Tune prints each failed trial's `error.txt` under /tmp/ray/session_*, its temporary
    session folder; the copy that lasts is in the trial's folder under the sweep's `ray/`.
    """
    for row in rows:
        if row.error_file is not None:
            ended = "failed" if row.status == "error" else "failed at least once (retried)"
            logger.warning("trial %s %s; its error is in %s", row.trial_id, ended, row.error_file)


EXPR_ERROR_FILE = "error.txt"  # Ray Tune's name for a trial's errors (ray.air.constants), in the trial's folder


def error_file(plan: SweepPlan, result: Any) -> str | None:
    """The trial's `error.txt` in the sweep's folder when the trial failed, retried or not; None when it never did."""
    kept = plan.experiment_path / Path(result.path).name / EXPR_ERROR_FILE
    return str(kept) if result.error is not None or kept.is_file() else None


def tune_configs(grid: Any) -> list[Mapping[str, Any]]:
    """The sampled values Tune holds for each trial of ``grid``, in the grid's order.

    A trial that never started (PENDING when the sweep was interrupted) has no result, so
    ``result.config`` is empty; its config is known only to Tune's trial objects, which the
    ResultGrid keeps privately. Empty configs when this Ray version keeps them elsewhere.
    """
    trials = getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or []
    if len(trials) != len(grid):
        return [{} for _ in range(len(grid))]
    return [dict(getattr(trial, "config", None) or {}) for trial in trials]


def trial_row(plan: SweepPlan, result: Any, sampled: Mapping[str, Any] | None = None) -> TrialRow:
    """One trial's line of the table from its Ray Tune result.

    ``sampled``: the values Tune holds for the trial (``tune_configs``), for one that never reported.
    """
    found = re.search(r"[0-9a-f]{5}_\d{5}", Path(result.path).name)
    trial_id = str((result.metrics or {}).get("trial_id") or (found.group(0) if found else Path(result.path).name))
    by_generation = {**computed_by_generation(plan, f"{plan.name}-{trial_id}"), **reported_by_generation(plan, result)}
    config = result.config or sampled or {}  # a trial that never started has no result, hence no result.config
    values = clip_values({k: config[k] for k in plan.settings.space if k in config}, plan.settings.space)
    status = _status(plan, result, by_generation)
    started = start_number(result, trial_id)
    return TrialRow(
        trial_id, f"{plan.name}-{trial_id}", values, by_generation, status, started, error_file(plan, result)
    )


def start_number(result: Any, trial_id: str) -> int | None:
    """The trial's number in the order Ray Tune created, and so started, the sweep's trials; None when not known.

    Tune numbers each trial as it creates it (``experiment_tag`` ``"3_train.lr=0.01"``, also in its
    folder's name after the trial id) and starts pending trials in that order. Why not the trial
    id: with ``search: optuna`` ids are random hex, so sorting by them is no order at all.
    """
    tag = str((result.metrics or {}).get("experiment_tag") or Path(result.path).name.partition(f"{trial_id}_")[2])
    number = tag.partition("_")[0]
    return int(number) if number.isdigit() else None


def in_start_order(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """The trials in Ray Tune's trial order, their number (the table, trials.csv, ties): the order Ray Tune created
    them, which is the order they started when they run one at a time; any not numbered last, as Ray lists them."""
    return sorted(rows, key=lambda row: (row.started is None, row.started or 0))


def reported_by_generation(plan: SweepPlan, result: Any) -> dict[int, float]:
    """Generation -> metric, the trial's checkpoint winning over Tune's result file.

    The checkpoint (TrialState.reported) is written with every report and holds the lineage
    the trial's models come from: after a PBT clone, the generations of the trial it copied.
    Tune's result file keeps the trial's own pre-clone lines, and can lose a paused trial's
    lines (TrialState); it only fills generations the checkpoint lacks.
    """
    by_generation: dict[int, float] = {}
    frame = result.metrics_dataframe
    if frame is not None and plan.settings.metric in frame:
        for generation, value in zip(frame["generation"], frame[plan.settings.metric]):
            by_generation[int(generation)] = float(value)
    if result.checkpoint:
        by_generation.update(TrialState.from_checkpoint(result.checkpoint).reported)
    return by_generation


def computed_by_generation(plan: SweepPlan, run_id: str) -> dict[int, float]:
    """Generation -> metric as the trial's ledger holds it: what the trial computed, reported to Tune or not.

    A Ctrl-C between a generation's metric stage and the trial's report to Tune left the value
    only in the trial's records (its ledger, its MLflow run): the table showed the generation as
    `-` and the trial as unfinished, though `relay runs` listed its metric. What Tune got wins
    (``reported_by_generation``: after a PBT clone it is the lineage's); this fills the rest.
    An unreadable ledger adds nothing: the table still has what Tune got.
    """
    try:
        ledger = read_ledger(ArtifactStore(plan.store_uri), run_id) or {}
    except (ArtifactError, OSError, ValueError):
        return {}
    stages = ledger.get("stages") if isinstance(ledger.get("stages"), dict) else {}
    computed: dict[int, float] = {}
    for generation, stage in enumerate(plan.report_stages):
        entry = stages.get(stage)
        metrics = entry.get("metrics") if isinstance(entry, dict) and entry.get("state") in DONE_STATES else None
        if isinstance(metrics, dict) and isinstance(metrics.get(plan.metric_name), int | float):
            computed[generation] = float(metrics[plan.metric_name])
    return computed


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


OPEN = ("interrupted", "unfinished")  # statuses of a trial that `relay tune --resume` goes on with


def _status(plan: SweepPlan, result: Any, by_generation: Mapping[int, float]) -> str:
    """completed | stopped early | error | interrupted | unfinished.

    A trial is stopped early only if Tune marked its last result done: the scheduler marks the
    result it stops a running trial on, and SuccessiveHalving the one a paused trial it stops
    reported last. Tune marks none on a Ctrl-C, so a trial that reported and was cut off (or
    left paused) is interrupted. Why not "every trial of the sweep ended": on a Ctrl-C Tune
    saves the running trials as unfinished, then terminates them, so the sweep's trials all read
    TERMINATED and a trial running during its last generations was labelled stopped early (the
    sweep even exited 0). ``by_generation`` holds what the trial computed, reported or not
    (``computed_by_generation``). A trial that computed nothing and did not fail never started,
    or was cut off first: unfinished.
    """
    if result.error is not None:
        return "error"
    if len(by_generation) >= plan.generations:
        return "completed"
    if not by_generation:
        return "unfinished"
    return "stopped early" if (result.metrics or {}).get("done") else "interrupted"


def _mlflow_status(status: str) -> str:
    """KILLED for a trial stopped early or cut off: MLflow's status for a run ended from outside.

    MLflow's own words (FINISHED, FAILED, KILLED), not a ``RunStatus``: they close the trial's MLflow run.
    """
    return {"completed": "FINISHED", "error": "FAILED"}.get(status, "KILLED")


# How a trial ended (``_status``) in the words of `relay runs`, for its `relay.status` (an open one: INTERRUPTED).
RELAY_STATUS_OF_TRIAL = {"completed": RunStatus.FINISHED, "error": RunStatus.FAILED, "stopped early": RunStatus.STOPPED}


def _relay_status(status: str) -> str:
    """The trial's `relay.status`: STOPPED says its scheduler stopped it, INTERRUPTED (as a `relay run`'s ledger
    says after Ctrl-C) that the sweep was, and `relay tune --resume` goes on with it: a trial cut off before
    it computed anything (unfinished) too, which read KILLED."""
    if status in OPEN:
        return RunStatus.INTERRUPTED
    return RELAY_STATUS_OF_TRIAL.get(status) or _mlflow_status(status)


def best_row(rows: Sequence[TrialRow], mode: str) -> TrialRow | None:
    """The best final value among the trials that got furthest (all generations, unless none did).

    A trial stopped after generation 0 is not compared on its generation-0
    value against trials that ran every generation. A tie goes to the trial Ray Tune numbered first
    (``in_start_order``), whatever order Ray lists the trials in. None while no scored trial has ended: a
    trial still open is compared only beside one that ended.

    Why: a Ctrl-C in a sweep's first trial wrote a best.yaml that named that trial its best, two lines
    above "sweep interrupted after 0 of 6 trials"; its metric was a partial one of a trial `--resume` reruns.
    """
    scored = [row for row in rows if row.by_generation]
    if not any(row.status not in OPEN for row in scored):
        return None
    furthest = max(len(row.by_generation) for row in scored)
    candidates = [row for row in scored if len(row.by_generation) == furthest]
    pick = max if mode == "max" else min
    ordered = in_start_order(candidates)  # max and min keep the first of equals
    return pick(ordered, key=lambda row: row.final())


def tied_with(rows: Sequence[TrialRow], best: TrialRow) -> list[TrialRow]:
    """The other trials that reached as far as ``best`` with the same final value: the tie its start order broke."""
    return [
        row
        for row in rows
        if row is not best and len(row.by_generation) == len(best.by_generation) and row.final() == best.final()
    ]


def trial_records(rows: Sequence[TrialRow]) -> list[dict[str, Any]]:
    """Flat records of the trials table, for trials.csv / trials.json: metrics as ``readable`` writes them,
    the trial's values exact in trials.json and readable in trials.csv (``ExactValue``)."""
    return [
        {
            "trial_id": row.trial_id,
            "run_id": row.run_id,
            "status": row.status,
            "generations": len(row.by_generation),
            **{key: exact_value(value) for key, value in row.values.items()},
            **{f"g{g:02d}": readable(value) for g, value in sorted(row.by_generation.items())},
        }
        for row in rows
    ]


SIGNIFICANT_DIGITS = 12


def readable(value: Any) -> Any:
    """A float rounded to 12 significant digits, so that the file shows 0.33, not 0.32999999999999996.

    Why 12: float arithmetic leaves its noise in the 16th-17th digit (a mean of per-class recalls,
    PBT's 0.2 * 0.8), and 12 digits clear the noise of thousands of such operations while
    keeping more than any metric can resolve (two accuracies over a million examples differ by
    at least 1e-12). A value the user wrote (a grid or choice entry) has fewer digits, so it is
    written exactly as given (Python writes the shortest text that reads back as the same float);
    a uniform sample is shown to 12 digits in trials.csv (trials.json, best.yaml and the trial's
    MLflow tags keep all of it: ``ExactValue``). Anything else is returned as it is.
    """
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


class ExactValue(float):
    """A trial's float value: exact in trials.json, shown to 12 significant digits in trials.csv.

    Why exact: `relay diff`, `relay runs` and the other readers of a trial rebuild its config from
    trials.json (a trial keeps no config.yaml), and a sample rounded there (crest.t_min 0.78796214352
    for 0.7879621435201636) read as a config that differed from its best.yaml, which holds all the
    digits. Why readable in trials.csv: that table is for people (PBT's 0.2 * 0.8 reads 0.16, not
    0.16000000000000003) and feeds no config back. ``json`` writes any float with ``float.__repr__``
    (the shortest text that reads back as the same float); ``csv`` writes a float with its own
    ``repr``, which this class makes ``readable``'s.
    """

    def __repr__(self) -> str:
        return repr(readable(float(self)))

    __str__ = __repr__


def exact_value(value: Any) -> Any:
    """A finite float as an ``ExactValue``; anything else as it is."""
    return ExactValue(value) if isinstance(value, float) and math.isfinite(value) else value


def trials_table(rows: Sequence[TrialRow], keys: Sequence[str], generations: int, best: TrialRow | None) -> str:
    """A plain-text table: values, the metric after every generation, how the trial ended."""
    headers = ["trial", *keys, *(f"g{g:02d}" for g in range(generations)), "status"]
    body = []
    for row in rows:
        cells = [row.trial_id + (" *" if row is best else ""), *(_fmt(row.values.get(k)) for k in keys)]
        cells += [_fmt(row.by_generation.get(g)) for g in range(generations)] + [row.status]
        body.append(cells)
    return text_table(headers, body)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
