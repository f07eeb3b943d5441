"""One trial: a pipeline run, one generation at a time, reporting the metric to Tune after each.

A trial's state is its *schedule* (which values it used from which generation on), and its
checkpoint is that schedule, not a model: the artifact store is keyed by fingerprint, so the
generations a trial (or the trial PBT cloned) already ran are cache hits.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import apply_overrides, validate_config
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RunStatus, record_path
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.runner import Runner
from orchestrator.tracking.common import TAG_SWEEP
from orchestrator.tracking.mlflow_tracker import mlflow_tracker
from orchestrator.tracking.run_tree import metric_prefix
from orchestrator.tune.plan import SWEEP_RECORD, SweepPlan, sweep_record
from orchestrator.tune.space import clip_values
from orchestrator.tune.trial_failures import keep_failure, refuse_repeat

TAG_TRIAL = "relay.tune.trial_id"
TAG_VALUE_PREFIX = "tune."
STATE_FILE = "trial_state.json"
# What a trial's failure or Ctrl-C says to do: `relay resume` refuses a trial; the sweep's --resume reruns it.
TRIAL_CONTINUED_BY = "relay tune CONFIG --resume (it continues the sweep and this trial)"
# The tracker's end of a trial Tune paused (its MLflow run closes KILLED until it resumes); not a RunStatus:
# no ledger says it, the trial's ledger says STOPPED between two generations.
PAUSED = "PAUSED"


@dataclass
class TrialState:
    """A trial's schedule: segments of (first generation, values), the next generation to run, what it reported,
    and the trial that ran it.

    ``reported`` (generation -> metric value) is what the trials table falls back on: Ray Tune
    keeps a trial's results in files it syncs to the sweep's folder every 10 s or more, and when a
    paused trial resumes it copies the synced file back over its own. A trial that reported
    generation 0 after the last copy and resumed before the next lost that line (an SHA sweep in
    the tests listed its best trial as stopped early after one generation; reproduced with
    TUNE_GLOBAL_CHECKPOINT_S=20). The checkpoint is written straight to storage with each
    report, so it never lags.

    ``trial_id``: the trial whose checkpoint this is. After a PBT exploit a trial starts from another
    trial's checkpoint, and its generations so far are that trial's lineage (``run_trial``); "" in a
    checkpoint written before it was kept.
    """

    segments: list[tuple[int, dict[str, Any]]]
    next_generation: int = 0
    reported: dict[int, float] = field(default_factory=dict)
    trial_id: str = ""

    def continue_with(self, values: Mapping[str, Any]) -> TrialState:
        """New values (a PBT mutation) apply from the next generation on; earlier ones keep theirs."""
        if self.segments and self.segments[-1][1] == dict(values):
            return self
        kept = [(start, v) for start, v in self.segments if start < self.next_generation]
        segments = kept + [(self.next_generation, dict(values))]
        return TrialState(segments, self.next_generation, dict(self.reported), self.trial_id)

    def after(self, generation: int, value: float) -> TrialState:
        """The state once ``generation`` has run and reported ``value``."""
        return TrialState(self.segments, generation + 1, {**self.reported, generation: value}, self.trial_id)

    def to_json(self) -> str:
        return json.dumps(
            {
                "segments": self.segments,
                "next_generation": self.next_generation,
                "reported": self.reported,
                "trial_id": self.trial_id,
            }
        )

    @staticmethod
    def from_json(text: str) -> TrialState:
        data = json.loads(text)
        reported = {int(g): float(v) for g, v in data.get("reported", {}).items()}  # absent before it was kept
        segments = [(int(s), dict(v)) for s, v in data["segments"]]
        return TrialState(segments, int(data["next_generation"]), reported, str(data.get("trial_id") or ""))

    @staticmethod
    def from_checkpoint(checkpoint: Any) -> TrialState:
        with checkpoint.as_directory() as directory:
            return TrialState.from_json((Path(directory) / STATE_FILE).read_text())


def scheduled_pipeline(plan: SweepPlan, segments: Sequence[tuple[int, Mapping[str, Any]]]) -> tuple[Pipeline, Any]:
    """One DAG whose generation-k stages come from the values in force at k; returns it and the latest config.

    Stage and artifact names do not depend on the values (checked before the
    sweep), so stages from different configs connect by name. The stages the sweep leaves out
    (``plan.left_out``: a baseline the metric does not depend on) are not in it, so a trial that ran
    every generation ends FINISHED, as its run's ledger and `relay runs` then say, not STOPPED.
    """
    configs = [validate_config(plan.config_model, apply_overrides(plan.base, dict(v))) for _, v in segments]
    built = [plan.build(config) for config in configs]
    starts = [start for start, _ in segments]

    def source(generation: int | None) -> Pipeline:
        if generation is None:
            return built[0]
        return built[max(i for i, start in enumerate(starts) if start <= generation or i == 0)]

    left_out = set(plan.left_out)
    stages = [source(stage.generation).stage(stage.name) for stage in built[0].stages if stage.name not in left_out]
    return Pipeline(built[0].name, stages), configs[-1]


def trial_seed(plan: SweepPlan, segments: Sequence[tuple[int, Mapping[str, Any]]]) -> int:
    """The seed every stage of the trial runs with: its sampled `seed` when the space has one, else the sweep's.

    The Runner's seed (not a stage's params) is what seeds stages and their fingerprints, as in
    `relay run`; a trial built it from the base config and ignored a sampled seed. The first
    segment's: PBT may not perturb `seed` (plan.schedule_problems), so it never changes.
    """
    first = dict(segments[0][1]) if segments else {}
    return int(first["seed"]) if "seed" in first else plan.seed


def trial_tags(plan: SweepPlan, trial_id: str, values: Mapping[str, Any]) -> dict[str, str]:
    """Tags of a trial's pipeline run: the sweep, the trial id and the values it runs with now."""
    tags = {TAG_SWEEP: plan.name, TAG_TRIAL: trial_id}
    tags.update({f"{TAG_VALUE_PREFIX}{key}": str(value) for key, value in values.items()})
    return tags


def run_trial(config: dict[str, Any], plan: SweepPlan, mlflow_level: str = "WARNING") -> None:
    """Tune's trainable: run the pipeline generation by generation, reporting the metric after each.

    ``mlflow_level``: the driver's MLflow log level (``sweep.mlflow_level``), as the trial's own.
    """
    from ray import tune

    quiet_mlflow_logs(mlflow_level)
    quiet_checkpoint_lines()
    values = clip_values({key: config[key] for key in plan.settings.space}, plan.settings.space)
    trial_id = tune.get_context().get_trial_id()
    checkpoint = tune.get_checkpoint()
    state = _load_state(checkpoint, values)
    copied = checkpoint is not None and state.trial_id != trial_id  # a PBT exploit's, or one from before it was kept
    state = dataclasses.replace(state, trial_id=trial_id)
    run_id = f"{plan.name}-{trial_id}"
    store = ArtifactStore(plan.store_uri)
    refuse_repeat(store, run_id, plan.session)
    pipeline, resolved = scheduled_pipeline(plan, state.segments)
    seed = trial_seed(plan, state.segments)
    tracker = mlflow_tracker(
        plan.tracking_uri,
        plan.tracking,
        parent_run_id=plan.sweep_run_id,
        extra_tags=trial_tags(plan, trial_id, values),
        pyfunc_loader=plan.pyfunc_loader,
    )
    tracker.start_pipeline(run_id, plan.pipeline_name, resolved.model_dump(mode="json"), resume=True)
    store.write_record(record_path(run_id, SWEEP_RECORD), json.dumps(sweep_record(plan)).encode())
    runner_for = functools.partial(
        Runner, store, RayExecutor(), tracker, plan.code_version, seed, continued_by=TRIAL_CONTINUED_BY
    )
    try:
        if copied:
            _record_lineage(runner_for, pipeline, run_id, plan, state.next_generation)
        for generation in range(state.next_generation, plan.generations):
            value = _run_generation(runner_for, pipeline, run_id, plan, generation)
            state = state.after(generation, value)
            _report(tune, plan, generation, value, values, state)
    except BaseException as error:
        tracker.end_pipeline(ending_status(error, plan.generations - state.next_generation))
        keep_failure(store, run_id, plan.session, error)
        raise
    tracker.end_pipeline(RunStatus.FINISHED)


MLFLOW_LEVEL_ENV = "MLFLOW_LOGGING_LEVEL"  # MLflow sets its own logger's level from it when it is first imported


def quiet_mlflow_logs(level: str) -> None:
    """MLflow's loggers in this trial's process at ``level``, as `relay` sets them in the driver (``quiet_mlflow``).

    Why: trials on a cluster's other nodes logged the system-metrics monitor's INFO lines, about ten
    a trial, which Ray forwards to the driver's console (`(run_trial pid=...) INFO mlflow...`).
    """
    os.environ[MLFLOW_LEVEL_ENV] = level
    logging.getLogger("mlflow").setLevel(level)


CHECKPOINT_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")  # Ray's, by module


def quiet_checkpoint_lines() -> None:
    """Ray's `Checkpoint successfully created at: Checkpoint(filesystem=local, path=...)` INFO line off this trial.

    Why: a trial checkpoints after every generation (its schedule), and Ray forwarded each of those
    lines, a 300-character path, to the sweep's console (`(run_trial pid=...) Checkpoint ...`); the
    checkpoint is Relay's bookkeeping, not a result. Ray's warnings and errors about it still pass.
    """
    for name in CHECKPOINT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def ending_status(error: BaseException, generations_left: int) -> str:
    """How a trial's run ends when its generation loop is cut off.

    Tune pauses or stops a trial by raising SystemExit(0) inside its report,
    after a generation completed: that is PAUSED (the sweep's driver sets the
    final status once the trial ends), or FINISHED if it was the last one.
    Anything else is a failure.
    """
    if isinstance(error, SystemExit) and error.code in (0, None):
        return PAUSED if generations_left > 0 else RunStatus.FINISHED
    return RunStatus.FAILED


def _load_state(checkpoint: Any, values: Mapping[str, Any]) -> TrialState:
    """A fresh schedule, or the checkpointed one continued with the (maybe mutated) values."""
    if checkpoint is None:
        return TrialState([(0, dict(values))])
    return TrialState.from_checkpoint(checkpoint).continue_with(values)


def _record_lineage(
    runner_for: Callable[[Path], Runner], pipeline: Pipeline, run_id: str, plan: SweepPlan, generations: int
) -> None:
    """Run the metric stage of each of the first ``generations`` (cache hits), so the trial's records are its lineage's.

    Why: after a PBT exploit the trial goes on from another trial's checkpoint and runs only what its
    next report needs: the training stages of earlier generations (upstream of it) but not their
    metric stages. Its ledger, `relay generations`, `relay runs` and its MLflow generation runs kept
    the scores of the lineage PBT threw away, beside the copied lineage's training stages. The trial
    it copied computed those stages, so each is found in the artifact cache by its fingerprint.
    """
    for generation in range(generations):
        _run_generation(runner_for, pipeline, run_id, plan, generation)


def _run_generation(
    runner_for: Callable[[Path], Runner], pipeline: Pipeline, run_id: str, plan: SweepPlan, generation: int
) -> float:
    """Run up to the generation's metric stage; the copies made for MLflow are gone before the trial reports.

    Tune pauses or stops a trial inside its report and then ends the trial's process without
    waiting for the trial to unwind (FunctionTrainable gives its thread 0 s), so a folder held
    open around the reports was left behind by each paused trial (an empty /tmp/relay-copies-*
    with a local store). This trial's tracker logs as it goes, so the copies are done with once
    the stages have run.
    """
    stage = plan.report_stages[generation]
    with tempfile.TemporaryDirectory(prefix="relay-copies-") as copies:
        summary = runner_for(Path(copies)).run(pipeline, run_id, stop_after=stage)
    metrics = summary.manifests[stage].metrics
    if plan.metric_name not in metrics:
        raise ValueError(
            f"tune.metric: stage {stage} reported {sorted(metrics)}, not {plan.metric_name!r}; "
            f"set tune.metric to {metric_prefix(stage)}/<one of those>"
        )
    return float(metrics[plan.metric_name])


def _report(
    tune: Any, plan: SweepPlan, generation: int, value: float, values: Mapping[str, Any], state: TrialState
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / STATE_FILE).write_text(state.to_json())
        metrics = {
            plan.settings.metric: value,
            "generation": generation,
            **{f"value/{k}": v for k, v in values.items()},
        }
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
