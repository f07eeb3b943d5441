"""`relay tune`: Ray Tune over pipeline runs; a trial is one pipeline run with sampled overrides.

Why it is shaped this way:

- The search space is a map of dotted config keys, applied with
  ``apply_overrides``, the CLI's own function: a key means the same thing in
  `relay run a.b=1` and in a sweep. Every key is checked against the base
  config (and the DAG's shape) before any trial starts.
- A trial runs its pipeline one generation at a time (``Runner.run`` with
  ``stop_after`` = the metric's stage of generation k) and reports after each,
  so ASHA stops and PBT perturbs at generation boundaries
  (``time_attr="training_iteration"`` = generations reported). Completed
  stages are cached by fingerprint, so each call only runs the new generation.
- A trial's state is its *schedule*: which values it used from which
  generation on. Its checkpoint is that schedule, not a model: the artifact
  store is keyed by fingerprint, so a pipeline whose generations < k come from
  the old values and >= k from the new ones finds the old generations in the
  cache. A PBT-mutated trial therefore continues at the next generation with
  the new values, from the models and picks of the trial it cloned (exploit
  copies the better trial's checkpoint, i.e. its schedule). A resumed trial
  continues after its last reported generation the same way.
- ``--resume`` is ``Tuner.restore``: finished trials keep their results and are
  not rerun; unfinished ones continue after their last reported generation.
  Ray Tune does not save scheduler state, so a resumed ASHA starts with empty
  rungs and compares only the trials it runs after the restore.
- Trial drivers hold ``trial_cpus`` (0.1): their stages are Ray tasks that ask
  for the stage resources, so the number of concurrent trials comes from the
  cluster's CPUs/GPUs divided by what one trial's largest stage needs.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import logging
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.config import (
    SearchDomain,
    TuneSettings,
    apply_overrides,
    artifact_uri,
    resolve_workspace,
    tracking_uri,
    validate_config,
)
from orchestrator.dag import Pipeline
from orchestrator.errors import ConfigError, PipelineError
from orchestrator.runner import Runner
from orchestrator.tracking import TAG_STATUS, TAG_SWEEP, MlflowTracker, metric_prefix

logger = logging.getLogger(__name__)

TAG_TRIAL = "relay.tune.trial_id"
TAG_VALUE_PREFIX = "tune."
STATE_FILE = "trial_state.json"
INTERIOR = 0.4142  # where a continuous range is probed: an arbitrary non-integral fraction


@dataclass(frozen=True)
class SweepPlan:
    """Everything a trial needs, as plain picklable values (it travels to Ray workers)."""

    name: str
    pipeline_name: str
    base: dict[str, Any]  # the config data, CLI overrides applied, `tune:` removed
    config_model: type
    build: Callable[[Any], Pipeline]
    settings: TuneSettings
    report_stages: tuple[str, ...]  # the metric's stage in each generation
    output: str
    store_uri: str
    tracking_uri: str
    experiment: str
    runs_dir: str
    code_version: str
    seed: int
    ray_address: str | None = None
    num_cpus: int | None = None
    strict_tracking: bool = False
    tracker_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # log_models, system_metrics, ...
    sweep_run_id: str | None = None

    @property
    def metric_name(self) -> str:
        """The metric as the stage reports it (`evaluate/balanced_accuracy` -> `balanced_accuracy`)."""
        return self.settings.metric.split("/", 1)[1]

    @property
    def generations(self) -> int:
        return len(self.report_stages)

    @property
    def experiment_path(self) -> Path:
        return Path(self.output) / "ray" / self.name


# --- checking the sweep before anything runs -------------------------------------------


def probe_values(domain: SearchDomain) -> list[Any]:
    """Values that stand for a domain: every listed value, both ends, and a non-integral interior point."""
    if domain.kind in ("choice", "grid"):
        return list(domain.args)
    low, high = domain.args
    if domain.kind == "randint":
        return [low, high]
    return [low, high, low + (high - low) * INTERIOR]


def _stage_names(build: Callable[[Any], Pipeline], config: Any) -> list[str]:
    return [stage.name for stage in build(config).stages]


def space_problems(base: Mapping[str, Any], space: Mapping[str, SearchDomain], config_model: type,
                   build: Callable[[Any], Pipeline]) -> list[str]:
    """Every key whose values the config rejects, or that would change the DAG, as `tune.space: ...` lines.

    A key is applied with values standing for its domain, exactly as a trial
    would apply it, so an unknown key, an out-of-range end or a float for an
    integer setting (RandAugment's N and M) fails here and not in a trial.
    """
    reference = _stage_names(build, validate_config(config_model, base))
    problems = []
    for key, domain in space.items():
        problem = _key_problem(base, key, domain, config_model, build, reference)
        if problem:
            problems.append(problem)
    return problems


def _key_problem(base: Mapping[str, Any], key: str, domain: SearchDomain, config_model: type,
                 build: Callable[[Any], Pipeline], reference: list[str]) -> str | None:
    for value in probe_values(domain):
        try:
            config = validate_config(config_model, apply_overrides(base, {key: value}))
        except ConfigError as exc:
            problem = "; ".join(exc.problems)
            if "valid integer" in problem:
                return (f"tune.space: {key} is an integer setting; sample it with randint or a choice of integers, "
                        f"not {domain.kind} {list(domain.args)}")
            return f"tune.space: {problem} (value {value!r} from {domain.kind} {list(domain.args)})"
        try:
            stages = _stage_names(build, config)
        except (ConfigError, PipelineError) as exc:
            return f"tune.space: {key}={value!r} makes an invalid pipeline: {exc}"
        if stages != reference:
            return (f"tune.space: {key}={value!r} changes the pipeline's stages (generations are the sweep's "
                    f"time axis); set {key} in the base config instead of searching it")
    return None


def report_stages(pipeline: Pipeline, metric: str) -> tuple[list[str], list[str]]:
    """(the metric's stage per generation, problems): the role must be a stage role in every generation."""
    role = metric.split("/", 1)[0]
    per_generation = {}
    for stage in pipeline.stages:
        if stage.generation is not None and metric_prefix(stage.name) == role:
            per_generation.setdefault(stage.generation, stage.name)
    roles = sorted({metric_prefix(s.name) for s in pipeline.stages if s.generation is not None})
    if not per_generation:
        return [], [f"tune.metric: no stage reports {metric!r}: {role!r} is not a stage role of this pipeline's "
                    f"generations; use `<role>/<metric>` with a role in {', '.join(roles)} (e.g. evaluate/balanced_accuracy)"]
    generations = sorted({s.generation for s in pipeline.stages if s.generation is not None})
    missing = [g for g in generations if g not in per_generation]
    if missing:
        return [], [f"tune.metric: {role!r} runs in generations {sorted(per_generation)} only, not {missing}; "
                    "pick a role every generation has, so every generation can report"]
    return [per_generation[g] for g in generations], []


def fit_concurrency(cluster: Mapping[str, float], pipeline: Pipeline, trial_cpus: float,
                    requested: int | None, trials: int) -> int:
    """How many trials run at once: each needs its driver plus its largest stage; the user may ask for fewer.

    Asking for more than fits would queue stage tasks behind each other while
    their trials hold slots: the sweep gets slower, not wider.
    """
    cpus = max((s.resources.num_cpus * s.resources.workers for s in pipeline.stages), default=1.0)
    gpus = max((s.resources.num_gpus * s.resources.workers for s in pipeline.stages), default=0.0)
    fits = math.floor(cluster.get("CPU", 1.0) / (cpus + trial_cpus) + 1e-9)
    if gpus > 0:
        fits = min(fits, math.floor(cluster.get("GPU", 0.0) / gpus + 1e-9))
    fits = max(1, fits)
    if requested is not None and requested > fits:
        logger.warning("tune.max_concurrent_trials=%d but the cluster fits %d trial(s) at once "
                       "(%.2g CPU %.2g GPU per trial); running %d", requested, fits, cpus + trial_cpus, gpus, fits)
    return max(1, min(fits, requested or fits, trials))


def plan_sweep(data: Mapping[str, Any], config: Any, build: Callable[[Any], Pipeline], code_version: str,
               output: str | None = None, source: str | None = None) -> SweepPlan:
    """Check the sweep and fix everything a trial needs; every problem raised at once as a ConfigError.

    ``data`` is the config file with CLI overrides applied and ``config`` its
    validated model (the composition root has already checked the rest).
    """
    settings: TuneSettings | None = getattr(config, "tune", None)
    if settings is None:
        raise ConfigError(["tune: no `tune:` section; add one with metric and space (see README, Tuning)"], source)
    base = {key: value for key, value in data.items() if key != "tune"}
    model = type(config)
    stages, problems = report_stages(build(config), settings.metric)
    problems += space_problems(base, settings.space, model, build)
    if problems:
        raise ConfigError(problems, source)
    name = settings.name or f"{config.name}-sweep"
    workspace = resolve_workspace(config.run)
    return SweepPlan(
        name=name, pipeline_name=config.name, base=base, config_model=model, build=build, settings=settings,
        report_stages=tuple(stages), output=str(Path(output).resolve() if output else workspace / "tune" / name),
        store_uri=artifact_uri(config.run), tracking_uri=tracking_uri(config.run, config.tracking),
        experiment=config.tracking.experiment, runs_dir=str(workspace / "runs"), code_version=code_version,
        seed=config.seed, ray_address=config.run.ray_address, num_cpus=config.run.num_cpus,
        strict_tracking=config.tracking.strict, tracker_options=_tracker_options(config.tracking),
    )


def _tracker_options(tracking: Any) -> dict[str, Any]:
    """The tracking settings MlflowTracker takes as keyword arguments, so trials track like `relay run`."""
    accepted = set(inspect.signature(MlflowTracker).parameters) - {"tracking_uri", "experiment", "strict"}
    return {key: value for key, value in tracking.model_dump().items() if key in accepted}


# --- values: sampling, clipping, the best config -----------------------------------------


def clip_values(values: Mapping[str, Any], space: Mapping[str, SearchDomain]) -> dict[str, Any]:
    """Put values back into their domains: PBT's explore multiplies by 0.8/1.2 and can leave a range.

    Ranges are clipped (randint also rounded to an int); a list value that is
    not in its list snaps to the nearest listed number, else the first entry.
    """
    clipped = dict(values)
    for key, domain in space.items():
        if key not in clipped:
            continue
        value = clipped[key]
        if domain.kind in ("choice", "grid"):
            clipped[key] = value if value in domain.args else _nearest(value, domain.args)
            continue
        low, high = domain.args
        value = min(max(value, low), high)
        clipped[key] = int(round(value)) if domain.kind == "randint" else float(value)
    return clipped


def _nearest(value: Any, options: Sequence[Any]) -> Any:
    numbers = [o for o in options if isinstance(o, (int, float)) and not isinstance(o, bool)]
    if isinstance(value, (int, float)) and numbers:
        return min(numbers, key=lambda o: abs(o - value))
    return options[0]


def best_config(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The base config with the best values applied and the `tune:` section removed: `relay run` takes it."""
    config = apply_overrides(data, dict(values))
    config.pop("tune", None)
    return config


def total_trials(settings: TuneSettings) -> int:
    """Trials the sweep will have: num_samples, times the grid's size when there are grid keys."""
    grid = math.prod(len(d.args) for d in settings.space.values() if d.kind == "grid")
    return settings.num_samples * grid


# --- one trial ------------------------------------------------------------------------------


@dataclass
class TrialState:
    """A trial's schedule: segments of (first generation, values), and the next generation to run."""

    segments: list[tuple[int, dict[str, Any]]]
    next_generation: int = 0

    def continue_with(self, values: Mapping[str, Any]) -> TrialState:
        """New values (a PBT mutation) apply from the next generation on; earlier ones keep theirs."""
        if self.segments and self.segments[-1][1] == dict(values):
            return self
        kept = [(start, v) for start, v in self.segments if start < self.next_generation]
        return TrialState(kept + [(self.next_generation, dict(values))], self.next_generation)

    def to_json(self) -> str:
        return json.dumps({"segments": self.segments, "next_generation": self.next_generation})

    @staticmethod
    def from_json(text: str) -> TrialState:
        data = json.loads(text)
        return TrialState([(int(s), dict(v)) for s, v in data["segments"]], int(data["next_generation"]))


def scheduled_pipeline(plan: SweepPlan, segments: Sequence[tuple[int, Mapping[str, Any]]]) -> tuple[Pipeline, Any]:
    """One DAG whose generation-k stages come from the values in force at k; returns it and the latest config.

    Stage and artifact names do not depend on the values (checked before the
    sweep), so stages from different configs connect by name.
    """
    configs = [validate_config(plan.config_model, apply_overrides(plan.base, dict(v))) for _, v in segments]
    built = [plan.build(config) for config in configs]
    starts = [start for start, _ in segments]

    def source(generation: int | None) -> Pipeline:
        if generation is None:
            return built[0]
        return built[max(i for i, start in enumerate(starts) if start <= generation or i == 0)]

    stages = [source(stage.generation).stage(stage.name) for stage in built[0].stages]
    return Pipeline(built[0].name, stages), configs[-1]


def trial_tags(plan: SweepPlan, trial_id: str, values: Mapping[str, Any]) -> dict[str, str]:
    """Tags of a trial's pipeline run: the sweep, the trial id and the values it runs with now."""
    tags = {TAG_SWEEP: plan.name, TAG_TRIAL: trial_id}
    tags.update({f"{TAG_VALUE_PREFIX}{key}": str(value) for key, value in values.items()})
    return tags


def run_trial(config: dict[str, Any], plan: SweepPlan) -> None:
    """Tune's trainable: run the pipeline generation by generation, reporting the metric after each."""
    from ray import tune

    from orchestrator.executor import RayExecutor

    values = clip_values({key: config[key] for key in plan.settings.space}, plan.settings.space)
    state = _load_state(tune.get_checkpoint(), values)
    trial_id = tune.get_context().get_trial_id()
    run_id = f"{plan.name}-{trial_id}"
    pipeline, resolved = scheduled_pipeline(plan, state.segments)
    tracker = MlflowTracker(plan.tracking_uri, plan.experiment, strict=plan.strict_tracking, **plan.tracker_options,
                            parent_run_id=plan.sweep_run_id, extra_tags=trial_tags(plan, trial_id, values))
    runner = Runner(ArtifactStore(plan.store_uri), RayExecutor(), tracker, plan.code_version, plan.seed,
                    runs_dir=Path(plan.runs_dir))
    tracker.start_pipeline(run_id, plan.pipeline_name, resolved.model_dump(mode="json"), resume=True)
    try:
        for generation in range(state.next_generation, plan.generations):
            value = _run_generation(runner, pipeline, run_id, plan, generation)
            state = TrialState(state.segments, generation + 1)
            _report(tune, plan, generation, value, values, state)
    except BaseException:
        tracker.end_pipeline("FAILED")
        raise
    tracker.end_pipeline("FINISHED")


def _load_state(checkpoint: Any, values: Mapping[str, Any]) -> TrialState:
    """A fresh schedule, or the checkpointed one continued with the (maybe mutated) values."""
    if checkpoint is None:
        return TrialState([(0, dict(values))])
    with checkpoint.as_directory() as directory:
        state = TrialState.from_json((Path(directory) / STATE_FILE).read_text())
    return state.continue_with(values)


def _run_generation(runner: Runner, pipeline: Pipeline, run_id: str, plan: SweepPlan, generation: int) -> float:
    stage = plan.report_stages[generation]
    summary = runner.run(pipeline, run_id, stop_after=stage)
    metrics = summary.manifests[stage].metrics
    if plan.metric_name not in metrics:
        raise ValueError(f"tune.metric: stage {stage} reported {sorted(metrics)}, not {plan.metric_name!r}; "
                         f"set tune.metric to {metric_prefix(stage)}/<one of those>")
    return float(metrics[plan.metric_name])


def _report(tune: Any, plan: SweepPlan, generation: int, value: float, values: Mapping[str, Any],
            state: TrialState) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / STATE_FILE).write_text(state.to_json())
        metrics = {plan.settings.metric: value, "generation": generation, **{f"value/{k}": v for k, v in values.items()}}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


# --- the sweep ------------------------------------------------------------------------------


def param_space(space: Mapping[str, SearchDomain]) -> dict[str, Any]:
    """Relay domains -> Ray Tune domains (randint's high is inclusive in Relay, exclusive in Ray)."""
    from ray import tune

    makers = {
        "choice": lambda a: tune.choice(list(a)), "grid": lambda a: tune.grid_search(list(a)),
        "randint": lambda a: tune.randint(a[0], a[1] + 1), "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
    }
    return {key: makers[domain.kind](domain.args) for key, domain in space.items()}


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

    return BasicVariantGenerator(points_to_evaluate=shuffled_grid(settings, seed), random_state=seed,
                                 max_concurrent=concurrency)


def shuffled_grid(settings: TuneSettings, seed: int) -> list[dict[str, Any]]:
    """Every grid point ``num_samples`` times, in a seeded random order.

    Why: Ray expands a grid in nested-loop order, so a sweep over
    ``train.lr: {grid: [0.01, 0.03, 0.1]}`` runs every weak learning rate
    first; run a few at a time, each later trial beats the earlier ones and
    ASHA promotes nearly all of them (0.78 of the grid's compute in
    benchmarks/tune_efficiency.py). A random order is what early stopping
    assumes. Random keys are still sampled per trial by the generator.
    """
    import random

    grid = {key: list(domain.args) for key, domain in settings.space.items() if domain.kind == "grid"}
    if not grid:
        return []
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] * settings.num_samples
    random.Random(seed).shuffle(points)
    return points


def make_tuner(plan: SweepPlan, concurrency: int, resume: bool) -> Any:
    """A new Tuner, or the interrupted one restored from the sweep's storage (finished trials stay finished)."""
    from ray import tune

    from orchestrator.tune_schedulers import make_scheduler

    trainable = tune.with_resources(tune.with_parameters(run_trial, plan=plan), {"cpu": plan.settings.trial_cpus})
    if resume:
        return tune.Tuner.restore(str(plan.experiment_path), trainable, resume_unfinished=True, resume_errored=True)
    settings = plan.settings
    seed = settings.seed if settings.seed is not None else plan.seed
    trials = total_trials(settings)
    search = make_search(settings, seed, concurrency)
    scheduler = make_scheduler(settings, plan.generations, trials, concurrency, release_slot=search.on_trial_complete)
    # num_samples = every trial: each grid point is one preset (``shuffled_grid``); without a grid, num_samples itself
    tune_config = tune.TuneConfig(metric=settings.metric, mode=settings.mode, num_samples=trials,
                                  scheduler=scheduler, search_alg=search)
    run_config = tune.RunConfig(name=plan.name, storage_path=str(Path(plan.output) / "ray"), verbose=1,
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=None))
    # Grid keys stay in the space (Ray checks presets against it); each preset fills them, so none expands.
    return tune.Tuner(trainable, param_space=param_space(settings.space), tune_config=tune_config,
                      run_config=run_config)


def can_resume(plan: SweepPlan) -> bool:
    from ray import tune

    return plan.experiment_path.exists() and tune.Tuner.can_restore(str(plan.experiment_path))


@dataclass
class TrialRow:
    """One line of the trials table."""

    trial_id: str
    run_id: str
    values: dict[str, Any]
    by_generation: dict[int, float]
    status: str  # completed | stopped early | error | unfinished

    def final(self) -> float | None:
        return self.by_generation[max(self.by_generation)] if self.by_generation else None


def run_sweep(plan: SweepPlan, resume: bool, sweep_tracker: Any) -> tuple[list[TrialRow], bool]:
    """Start (or restore) the sweep on Ray and fit it; returns the trials table and whether every trial ended."""
    import ray

    from orchestrator.executor import RayExecutor

    session = RayExecutor(address=plan.ray_address, num_cpus=plan.num_cpus)  # owns ray.init, dashboard on
    try:
        trials = total_trials(plan.settings)
        probe = validate_config(plan.config_model, plan.base)
        concurrency = fit_concurrency(ray.cluster_resources(), plan.build(probe), plan.settings.trial_cpus,
                                      plan.settings.max_concurrent_trials, trials)
        logger.info("sweep %s: %d trial(s), %d at once, %d generation(s) each", plan.name, trials, concurrency,
                    plan.generations)
        grid = make_tuner(plan, concurrency, resume).fit()
        # Every trial ended (none left paused or pending by an interrupt): a short one was stopped early.
        # Why not only each last result's ``done``: a trial stopped while paused (sha) never reports again.
        ended = grid.num_terminated + grid.num_errors == len(grid)
        rows = [_row(plan, result, ended) for result in grid]
    finally:
        session.shutdown()
    done = len(rows) >= trials and all(row.status != "unfinished" for row in rows)
    for row in rows:
        sweep_tracker.close_trial(row.run_id, _mlflow_status(row.status), {
            "relay.tune.status": row.status, "relay.tune.generations": str(len(row.by_generation)),
            TAG_STATUS: "STOPPED" if row.status == "stopped early" else _mlflow_status(row.status)})
    return rows, done


def _row(plan: SweepPlan, result: Any, ended: bool = False) -> TrialRow:
    frame = result.metrics_dataframe
    found = re.search(r"[0-9a-f]{5}_\d{5}", Path(result.path).name)
    trial_id = str((result.metrics or {}).get("trial_id") or (found.group(0) if found else Path(result.path).name))
    by_generation: dict[int, float] = {}
    if frame is not None and plan.settings.metric in frame:
        for generation, value in zip(frame["generation"], frame[plan.settings.metric]):
            by_generation[int(generation)] = float(value)
    config = result.config or {}  # a trial that never started has no config
    values = clip_values({k: config[k] for k in plan.settings.space if k in config}, plan.settings.space)
    status = _status(plan, result, by_generation, ended)
    return TrialRow(trial_id, f"{plan.name}-{trial_id}", values, by_generation, status)


def _status(plan: SweepPlan, result: Any, by_generation: Mapping[int, float], ended: bool = False) -> str:
    if result.error is not None:
        return "error"
    if len(by_generation) >= plan.generations:
        return "completed"
    # The scheduler marks the result it stops a running trial on as done; an interrupted trial's is not.
    return "stopped early" if ended or (result.metrics or {}).get("done") else "unfinished"


def _mlflow_status(status: str) -> str:
    return {"completed": "FINISHED", "stopped early": "KILLED", "error": "FAILED"}.get(status, "KILLED")


def best_row(rows: Sequence[TrialRow], mode: str) -> TrialRow | None:
    """The best final value among the trials that got furthest (all generations, unless none did).

    A trial stopped after generation 0 is not compared on its generation-0
    value against trials that ran every generation.
    """
    scored = [row for row in rows if row.by_generation]
    if not scored:
        return None
    furthest = max(len(row.by_generation) for row in scored)
    candidates = [row for row in scored if len(row.by_generation) == furthest]
    pick = max if mode == "max" else min
    return pick(candidates, key=lambda row: row.final())


def with_sweep_run(plan: SweepPlan, sweep_run_id: str | None) -> SweepPlan:
    return dataclasses.replace(plan, sweep_run_id=sweep_run_id)


def trial_records(rows: Sequence[TrialRow]) -> list[dict[str, Any]]:
    """Flat records of the trials table, for trials.csv / trials.json."""
    return [{"trial_id": row.trial_id, "run_id": row.run_id, "status": row.status,
             "generations": len(row.by_generation), **row.values,
             **{f"g{g:02d}": value for g, value in sorted(row.by_generation.items())}} for row in rows]


def trials_table(rows: Sequence[TrialRow], keys: Sequence[str], generations: int, best: TrialRow | None) -> str:
    """A plain-text table: values, the metric after every generation, how the trial ended."""
    headers = ["trial", *keys, *(f"g{g:02d}" for g in range(generations)), "status"]
    body = []
    for row in rows:
        cells = [row.trial_id + (" *" if row is best else ""), *(_fmt(row.values.get(k)) for k in keys)]
        cells += [_fmt(row.by_generation.get(g)) for g in range(generations)] + [row.status]
        body.append(cells)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [headers, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
