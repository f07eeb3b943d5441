"""Checking a sweep before anything runs, and fixing everything its trials need in one ``SweepPlan``.

Every key of the search space is applied with values standing for its domain, exactly as a
trial would apply it, so a bad key or value is one ConfigError (exit 2) before Ray starts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import (
    SearchDomain,
    TrackingSettings,
    TuneSettings,
    apply_overrides,
    artifact_uri,
    resolve_workspace,
    tracking_uri,
    validate_config,
)
from orchestrator.dag import Pipeline
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.engine.fit import live_node_resources, stage_cpus_to_start, trials_fitting_nodes
from orchestrator.errors import ConfigError, PipelineError
from orchestrator.tracking.mlflow_tracker import metric_prefix
from orchestrator.tune.space import probe_values

logger = logging.getLogger(__name__)


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
    tracking: TrackingSettings  # the trials' pipeline runs track as `relay run` would
    code_version: str | Mapping[str, str]  # one for all stages, or per stage module (fingerprint.code_versions)
    seed: int
    ray_address: str | None = None
    num_cpus: int | None = None
    object_store_memory: int | None = None  # run.object_store_memory: the local Ray instance's store
    sweep_run_id: str | None = None
    pipeline_kind: str = ""  # the config's `pipeline:` (crest), which `relay runs` shows for a trial
    left_out: tuple[str, ...] = ()  # stages trials do not run: comparison branches the metric does not depend on
    pyfunc_loader: str | None = None  # the pipeline spec's: the trials' logged models name it in their MLmodel files

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


StageShape = list[tuple[str, int | None]]  # (name, generation) of each stage: what every trial must share


def _stage_names(build: Callable[[Any], Pipeline], config: Any) -> StageShape:
    return [(stage.name, stage.generation) for stage in build(config).stages]


def _built_stage_names(build: Callable[[Any], Pipeline], config: Any) -> StageShape | None:
    """The stages of ``config``'s pipeline; None when it does not build (a problem reported beside the space's)."""
    try:
        return _stage_names(build, config)
    except (ConfigError, PipelineError):
        return None


def space_problems(
    base: Mapping[str, Any], space: Mapping[str, SearchDomain], config_model: type, build: Callable[[Any], Pipeline]
) -> list[str]:
    """Every key whose values the config rejects, or that would change the DAG, as `tune.space: ...` lines.

    A key is applied with values standing for its domain, exactly as a trial
    would apply it, so an unknown key, an out-of-range end or a float for an
    integer setting (RandAugment's N and M) fails here and not in a trial. Where the base config's pipeline
    does not build (idle workers, reported beside these), the values are checked, not the stages they make.
    """
    reference = _built_stage_names(build, validate_config(config_model, base))
    problems = []
    for key, domain in space.items():
        problem = fixed_key_problem(key) or _key_problem(base, key, domain, config_model, build, reference)
        if problem:
            problems.append(problem)
    return problems


FIXED_SECTIONS = {
    "run": "where the sweep runs and stores its artifacts, the same for every trial",
    "tracking": "where every trial's MLflow runs go, the same for every trial",
    "tune": "a setting of the sweep itself, not of a trial",
}


def fixed_key_problem(key: str) -> str | None:
    """Why ``key`` cannot vary per trial, or None.

    A trial takes its store, tracking store and Ray from the sweep (one place for the whole
    sweep's cache and runs), so a sampled `run.*` / `tracking.*` value would be silently
    ignored; and a `tune.*` key was applied to a base without `tune:`, which read as a
    missing tune.metric.
    """
    section = key.split(".", 1)[0]
    if section not in FIXED_SECTIONS:
        return None
    return (
        f"tune.space.{key}: {key} cannot vary per trial ({section}.* is {FIXED_SECTIONS[section]}); "
        f"remove it from tune.space and set it in the config or on the command line ({key}=VALUE)"
    )


def _key_problem(
    base: Mapping[str, Any],
    key: str,
    domain: SearchDomain,
    config_model: type,
    build: Callable[[Any], Pipeline],
    reference: StageShape | None,
) -> str | None:
    for value in probe_values(domain):
        try:
            config = validate_config(config_model, apply_overrides(base, {key: value}))
        except ConfigError as exc:
            problem = "; ".join(exc.problems)
            if "valid integer" in problem:
                return (
                    f"tune.space.{key}: {key} is an integer setting; sample it with randint or a choice of integers, "
                    f"not {domain.kind} {list(domain.args)}"
                )
            problem = _without_key(problem, key)
            if problem.startswith(UNKNOWN_KEY):  # no value would do: the sampled one is no clue
                return f"tune.space.{key}: {problem}"
            return f"tune.space.{key}: {problem} (value {value!r} from {domain.kind} {list(domain.args)})"
        if reference is None:
            continue
        try:
            stages = _stage_names(build, config)
        except (ConfigError, PipelineError) as exc:
            return f"tune.space.{key}: {key}={value!r} makes an invalid pipeline: {exc}"
        if stages != reference:
            return f"tune.space.{key}: {key}={value!r} {_shape_change(reference, stages)}; set {key} in the base config instead of searching it"
    return None


def inert_keys(
    base: Mapping[str, Any],
    space: Mapping[str, SearchDomain],
    config_model: type,
    build: Callable[[Any], Pipeline],
    ranked_on: Sequence[str] = (),
) -> list[str]:
    """One warning line per key of the space no value of which changes what a trial computes (``trial_work``).

    ``ranked_on``: the stages that report the sweep's metric (``sweep_check``); a trial runs them and what
    they need, no more (``left_out_stages``), so only that work counts. Why: a key read only by a stage
    trials leave out (a plug-in's stage after the evaluation, a no-teacher baseline) gave trials that
    differed in name only, with no warning, and a "best" value that meant nothing. Empty: the whole pipeline.
    Why a warning, not a refusal: such a sweep runs and ranks its trials correctly on the other keys; a
    quick check with one generation (where the temperature schedule is never used) is a fair thing to run.
    Keys the space check refuses are left to it.
    """
    lines = []
    for key, domain in space.items():
        works = []
        for value in probe_values(domain):
            try:
                config = validate_config(config_model, apply_overrides(base, {key: value}))
                works.append(_work_and_ranked(build(config), config.seed, ranked_on))
            except (ConfigError, PipelineError):
                works = []
                break
        if len(works) > 1 and all(ranked == works[0][1] for _, ranked in works):
            lines.append(_inert_line(key, domain, _stages_apart([whole for whole, _ in works])))
    return lines


def _inert_line(key: str, domain: SearchDomain, left_out_readers: Sequence[str]) -> str:
    """The warning for an inert key: read only by stages trials leave out (named), or read by no stage."""
    values = f"no value of {domain.kind} {list(domain.args)} changes what a trial computes under this config"
    if left_out_readers:
        why = (
            f"it is read only by {', '.join(left_out_readers)}, which trials do not run: they run what "
            "tune.metric's stages need; `relay run` of the sweep's best.yaml runs them"
        )
    else:
        why = (
            "it is not read with the config's other settings, e.g. a setting of a feature the config turns off, "
            "or of generations it does not have"
        )
    return (
        f"tune.space.{key}: {values} ({why}), so it cannot tell the trials apart; remove it from tune.space, "
        "or set what makes it matter in the base config"
    )


def _stages_apart(works: Sequence[Mapping[str, str]]) -> list[str]:
    """The stages whose work differs between ``works`` (each a ``trial_work``), in the first one's order."""
    first = works[0]
    return [name for name in first if any(work.get(name) != first[name] for work in works[1:])]


def _work_and_ranked(pipeline: Pipeline, seed: int, ranked_on: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(``trial_work`` of the whole pipeline, of the stages a trial runs: ``_ranked_work``)."""
    whole = trial_work(pipeline, seed)
    return whole, _ranked_work(pipeline, whole, ranked_on)


def _ranked_work(pipeline: Pipeline, work: Mapping[str, str], ranked_on: Sequence[str]) -> dict[str, str]:
    """``work`` (a ``trial_work``) of the stages a trial runs: ``ranked_on`` and their upstream (all when none is
    given)."""
    ranked = [name for name in ranked_on if name in work]
    if not ranked:
        return dict(work)
    kept = set(ranked).union(*(pipeline.upstream(name) for name in ranked))
    return {name: fingerprint for name, fingerprint in work.items() if name in kept}


def trial_work(pipeline: Pipeline, seed: int) -> dict[str, str]:
    """Each stage's fingerprint as a run of ``pipeline`` computes it, an input stood for by its producer's: two
    configs with the same are the same work, the second all cache hits.

    Why: a searched key the config never reads (`crest.t_min` with `crest.alignment=false`) gave trials that
    differed only in name; the sweep spent its budget on copies and ranked them on noise-free ties.
    """
    work: dict[str, str] = {}
    for layer in pipeline.layers():
        for stage in layer:
            inputs = {name: work.get(_producer_name(pipeline, name), name) for name in stage.inputs}
            work[stage.name] = fingerprint(stage, inputs, "", seed)
    return work


def _producer_name(pipeline: Pipeline, artifact: str) -> str:
    try:
        return pipeline.producer(artifact).name
    except PipelineError:  # an input no stage writes (a given checkpoint): its name stands for it
        return artifact


UNKNOWN_KEY = "unknown key"  # how a config problem about a key the section does not have begins


def _shape_change(reference: StageShape, stages: StageShape) -> str:
    """How a searched value changes the pipeline, and why every trial must keep its shape.

    Why two wordings: "generations are the sweep's time axis" explains a change of the number of
    generations only; a value that adds or drops a branch (a baseline) keeps the generations.
    """
    before = len({g for _, g in reference if g is not None})
    after = len({g for _, g in stages if g is not None})
    if before != after:
        return (
            f"changes the number of generations ({before} -> {after}; generations are the sweep's time axis, "
            "the same in every trial)"
        )
    names, reference_names = [n for n, _ in stages], [n for n, _ in reference]
    added = [n for n in names if n not in reference_names]
    removed = [n for n in reference_names if n not in names]
    change = "; ".join(
        part
        for part in (f"adds {', '.join(added)}" if added else "", f"removes {', '.join(removed)}" if removed else "")
        if part
    )
    return (
        f"changes the pipeline's stages ({change or 'their generations'}; every trial runs the same stages, so that "
        "trials compare generation by generation and PBT can continue one trial's stages with another's values)"
    )


def _without_key(problem: str, key: str) -> str:
    """A config problem about ``key`` without its heading key, which the space problem names already."""
    return problem.removeprefix(f"{key}: ")


def report_stages(pipeline: Pipeline, metric: str) -> tuple[list[str], list[str]]:
    """(the metric's stage per generation, problems): the role must be a stage role in every generation."""
    role = metric.split("/", 1)[0]
    per_generation = {}
    for stage in pipeline.stages:
        if stage.generation is not None and metric_prefix(stage.name) == role:
            per_generation.setdefault(stage.generation, stage.name)
    roles = sorted({metric_prefix(s.name) for s in pipeline.stages if s.generation is not None})
    if not per_generation:
        return [], [
            f"tune.metric: no stage reports {metric!r}: {role!r} is not a stage role of this pipeline's "
            f"generations; use `<role>/<metric>` with a role in {', '.join(roles)} (e.g. evaluate/balanced_accuracy)"
        ]
    generations = sorted({s.generation for s in pipeline.stages if s.generation is not None})
    missing = [g for g in generations if g not in per_generation]
    if missing:
        return [], [
            f"tune.metric: {role!r} runs in generations {sorted(per_generation)} only, not {missing}; "
            "pick a role every generation has, so every generation can report"
        ]
    unreported = _unreported(pipeline, per_generation.values(), metric.split("/", 1)[-1])
    if unreported:
        return [], [unreported]
    return [per_generation[g] for g in generations], []


def _unreported(pipeline: Pipeline, stage_names: Iterable[str], name: str) -> str | None:
    """A metric name the chosen stages declare they never report (a typo would fail the sweep's first trial)."""
    for stage_name in stage_names:
        declared = pipeline.stage(stage_name).reports
        if declared is not None and not any(fnmatch.fnmatchcase(name, pattern) for pattern in declared):
            return (
                f"tune.metric: stage {stage_name} reports {', '.join(declared)}, not {name!r}; "
                f"use one of those after `{metric_prefix(stage_name)}/`"
            )
    return None


def fit_concurrency(
    cluster: Mapping[str, float],
    pipeline: Pipeline,
    trial_cpus: float,
    requested: int | None,
    trials: int,
    nodes: Sequence[Mapping[str, float]] | None = None,
) -> int:
    """How many trials run at once: each needs its driver plus its largest stage; the user may ask for fewer.

    Asking for more than fits would queue stage tasks behind each other while
    their trials hold slots: the sweep gets slower, not wider. Counted per node
    (``trials_fitting_nodes``): a stage worker runs on one node, next to whatever drivers share it.
    ``nodes``: each live node's total resources; None reads them from the connected Ray, and
    without one ``cluster`` counts as a single node.
    """
    if nodes is None:
        nodes = connected_node_resources()
    per_node = list(nodes) or [{"CPU": cluster.get("CPU", 1.0), "GPU": cluster.get("GPU", 0.0)}]
    fits = max(1, trials_fitting_nodes(per_node, pipeline, trial_cpus))
    if requested is not None and requested > fits:
        cpus = max((s.resources.num_cpus * s.resources.workers for s in pipeline.stages), default=1.0)
        gpus = max((s.resources.num_gpus * s.resources.workers for s in pipeline.stages), default=0.0)
        logger.warning(
            "tune.max_concurrent_trials=%d but the cluster fits %d trial(s) at once "
            "(%.2g CPU %.2g GPU per trial, each stage worker on one node of %d); running %d",
            requested,
            fits,
            cpus + trial_cpus,
            gpus,
            len(per_node),
            fits,
        )
    return max(1, min(fits, requested or fits, trials))


def connected_node_resources() -> list[dict[str, float]]:
    """Each live node's total resources from the Ray this process is connected to; [] when it is not."""
    try:
        import ray

        return live_node_resources(ray.nodes()) if ray.is_initialized() else []
    except Exception:  # an older or half-started Ray: the cluster's totals, as one node, still give a count
        return []


def trial_fit_problem(pipeline: Pipeline, trial_cpus: float, cpus: float) -> str | None:
    """Why no trial could ever run on a local Ray of ``cpus`` CPUs, or None.

    A trial's driver holds ``trial_cpus`` while its stages run beside it. Ray Train waits for
    all the workers of a data-parallel stage (and gives up after a minute, three times per
    trial), so a stage as wide as the machine never starts inside a sweep; a labeling stage
    needs only one of its actors. A local Ray never grows, so this is bad input; a cluster
    (``--address``, ``run.ray_address``) may add nodes and is not checked.
    The line is headed by the larger of the two, so that the override that set it is named
    (`resources.train.workers=2` was blamed on tune.trial_cpus).
    """
    widest = max(pipeline.stages, key=stage_cpus_to_start)
    stage_cpus = stage_cpus_to_start(widest)
    need = trial_cpus + stage_cpus
    if need <= cpus + 1e-9:
        return None
    resources = f"resources.{widest.role}" if getattr(widest, "role", None) else f"the resources of {widest.name}"
    heading = "tune.trial_cpus" if trial_cpus >= stage_cpus or resources.startswith("the ") else resources
    return (
        f"{heading}: a trial needs {need:g} CPUs at once ({trial_cpus:g} for its driver beside {widest.name}'s "
        f"{stage_cpus:g}) but the local Ray has {cpus:g}; lower tune.trial_cpus or {resources} (num_cpus, workers), "
        "or raise run.num_cpus"
    )


def resource_values(space: Mapping[str, SearchDomain]) -> list[tuple[str, SearchDomain, list[Any]]]:
    """(key, domain, the values to check) of each `resources.*` key of the space: every listed value, or a range's
    upper bound, the most a trial's stage can ask for (a lower value asks for less; ``_unfit_range_problem``
    finds how far a randint must come down)."""
    return [
        (key, domain, list(domain.args) if domain.kind in ("choice", "grid") else [domain.args[-1]])
        for key, domain in space.items()
        if key == "resources" or key.startswith("resources.")
    ]


def space_fit_problems(
    base: Mapping[str, Any],
    space: Mapping[str, SearchDomain],
    config_model: type,
    build: Callable[[Any], Pipeline],
    fit_problems: Callable[[Pipeline], list[str]],
) -> list[str]:
    """One line per `resources.*` key of the space with a value whose trial could never start, or ``[]``.

    ``fit_problems`` is the check the base config passed (``cluster_fit.check_cluster``'s, and
    a trial's driver beside its widest stage on a local Ray): a trial given such a value was
    accepted and its stage waited forever for a place no node or local Ray could ever give.
    Problems the base config has already are its own, reported by that check.
    """
    known = set(_fit_problems_of(base, config_model, build, fit_problems) or [])

    def unfit_at(key: str, value: Any) -> list[tuple[Any, str]]:
        found = _fit_problems_of(base, config_model, build, fit_problems, key, value) or []
        return [(value, problem) for problem in found if problem not in known][:1]

    def fits(key: str, value: Any) -> bool:  # any problem counts, the base config's own too
        return not _fit_problems_of(base, config_model, build, fit_problems, key, value)

    problems = []
    for key, domain, values in resource_values(space):
        unfit = [pair for value in values for pair in unfit_at(key, value)]
        if unfit and domain.kind == "randint":
            problems.append(_unfit_range_problem(key, domain, unfit[0][1], lambda value, key=key: fits(key, value)))
        elif unfit:
            problems.append(_unfit_value_problem(key, domain, unfit))
    return problems


def largest_fitting(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest integer in [low, high] that ``fits``, by bisection (a larger resource value asks for more, so the
    values that fit are those up to some bound); None when not even ``low`` does.

    Why bisection: a range such as {randint: [1, 4096]} was walked down value by value, thousands of builds.
    """
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _unfit_range_problem(key: str, domain: SearchDomain, problem: str, fits: Callable[[int], bool]) -> str:
    """The line for a randint of resources whose top cannot fit: the values that cannot, and the largest bound that
    can (or that none can).

    Why: the line named only the upper bound (`workers=3` on 2 CPUs), and a user who lowered it to 2 was
    refused again (2 workers leave no room for the trial's driver).
    """
    low, high = int(domain.args[0]), int(domain.args[-1])
    largest = largest_fitting(low, high - 1, fits) if high > low else None
    first = low if largest is None else largest + 1
    values = f"{key}={high}" if first == high else f"{key} from {first} to {high}"
    shortfall = CONFIG_KEY_HEADING.sub("", problem.split("; ", 1)[0])  # the shortfall at the top
    fix = (
        f"lower the randint's upper bound to {largest}, the largest that fits"
        if largest is not None
        else f"no value of randint {list(domain.args)} fits: set {key} to a smaller range or value"
    )
    return (
        f"tune.space.{key}: a trial given {values} (of randint {list(domain.args)}) could never start, as the same "
        f"value set in the config could not: at {high}, {shortfall}; {fix}"
    )


def _fit_problems_of(
    base: Mapping[str, Any],
    config_model: type,
    build: Callable[[Any], Pipeline],
    fit_problems: Callable[[Pipeline], list[str]],
    key: str | None = None,
    value: Any = None,
) -> list[str] | None:
    """``fit_problems`` of the pipeline ``base`` (with ``key`` set to ``value``) builds; None when it does not build
    (``space_problems`` says why)."""
    data = base if key is None else apply_overrides(base, {key: value})
    try:
        return fit_problems(build(validate_config(config_model, data)))
    except (ConfigError, PipelineError):
        return None


CONFIG_KEY_HEADING = re.compile(r"^[a-z_]+(?:\.[a-z_]+)+: ")  # `resources.train: ` of a trial's line


def _unfit_value_problem(key: str, domain: SearchDomain, unfit: list[tuple[Any, str]]) -> str:
    """The line for a space key some of whose values can never fit: those values, the first one's shortfall in the
    base check's own words (up to its fix, which is about the config), and how to change the space."""
    values = " or ".join(f"{value!r}" for value, _ in unfit)
    shortfall = CONFIG_KEY_HEADING.sub("", unfit[0][1].split("; ", 1)[0])  # the key above names it already
    if domain.kind in ("choice", "grid"):
        given, fix = f"from {domain.kind} {list(domain.args)}", f"drop {values} from the {domain.kind}"
    else:
        given = f"the upper bound of {domain.kind} {list(domain.args)}"
        fix = f"lower the {domain.kind}'s upper bound to a value that fits"
    return (
        f"tune.space.{key}: a trial given {key}={values} ({given}) could never start, as the same value set in "
        f"the config could not: {shortfall}; {fix}"
    )


def sweep_check(
    base: Mapping[str, Any], config: Any, settings: TuneSettings, build: Callable[[Any], Pipeline]
) -> tuple[list[str], list[str]]:
    """(the stages that report ``tune.metric``, every problem of the sweep): what `relay validate` checks too.

    ``base`` is the config file without its `tune:` section; each key of the space must be one
    of its keys, and every value of the space must make a valid config.
    """
    pipeline = _built(build, config)
    stages, problems = report_stages(pipeline, settings.metric) if pipeline is not None else ([], [])
    problems += schedule_problems(settings, len(stages))
    return stages, problems + space_problems(base, settings.space, type(config), build)


def _built(build: Callable[[Any], Pipeline], config: Any) -> Pipeline | None:
    """``config``'s pipeline; None when it does not build: the space's values are still checked
    (``space_problems``), so a file with idle workers lists its space's problems too."""
    try:
        return build(config)
    except (ConfigError, PipelineError):
        return None


def schedule_problems(settings: TuneSettings, generations: int) -> list[str]:
    """Scheduler settings counted in generations must fit in the sweep's ``generations``.

    Ray's ASHA asserts ``grace_period <= max_t`` only once the sweep has started (a trace after
    the sweep's MLflow run exists); a perturbation interval past the last generation never acts.
    """
    if not generations:
        return []  # report_stages has said why
    problems = []
    if settings.scheduler in ("asha", "sha") and settings.grace_period > generations:
        problems.append(
            f"tune.grace_period: {settings.grace_period} generations, but each trial has {generations}; "
            f"set it to at most {generations} (1 compares trials after their first generation)"
        )
    if settings.scheduler in ("pbt", "pb2") and settings.perturbation_interval >= generations:
        problems.append(
            f"tune.perturbation_interval: {settings.perturbation_interval} generations, but each trial has "
            f"{generations}, so no trial would ever be perturbed; set it below {generations}"
        )
    if settings.scheduler in ("pbt", "pb2") and "seed" in settings.space:
        problems.append(
            f"tune.space.seed: seed cannot be perturbed by scheduler {settings.scheduler}: a trial's seed fixes every "
            "stage from its first generation, so a new one would not continue the generations it copied; "
            "search seed with scheduler asha, sha or none, or set seed in the config"
        )
    return problems


def plan_sweep(
    data: Mapping[str, Any],
    config: Any,
    build: Callable[[Any], Pipeline],
    code_version: str | Mapping[str, str],
    output: str | None = None,
    source: str | None = None,
    pyfunc_loader: str | None = None,
) -> SweepPlan:
    """Check the sweep and fix everything a trial needs; every problem raised at once as a ConfigError.

    ``data`` is the config file with CLI overrides applied and ``config`` its
    validated model (the composition root has already checked the rest).
    """
    settings: TuneSettings | None = getattr(config, "tune", None)
    if settings is None:
        raise ConfigError(["tune: no `tune:` section; add one with metric and space (see README, Tuning)"], source)
    base = {key: value for key, value in data.items() if key != "tune"}
    model = type(config)
    stages, problems = sweep_check(base, config, settings, build)
    if problems:
        raise ConfigError(problems, source)
    for line in inert_keys(base, settings.space, model, build, stages):
        logger.warning(line)
    name = settings.name or f"{config.name}-sweep"
    workspace = resolve_workspace(config.run)
    pipeline = build(config)
    return SweepPlan(
        name=name,
        pipeline_name=config.name,
        base=base,
        config_model=model,
        build=build,
        settings=with_seed(settings, config.seed),
        report_stages=tuple(stages),
        output=str(Path(output).expanduser().resolve() if output else workspace / "tune" / name),
        store_uri=artifact_uri(config.run),
        tracking_uri=tracking_uri(config.run, config.tracking),
        tracking=config.tracking,
        code_version=code_version,
        seed=config.seed,
        ray_address=config.run.ray_address,
        num_cpus=config.run.num_cpus,
        object_store_memory=config.run.object_store_memory,
        pipeline_kind=config.pipeline,
        left_out=tuple(left_out_stages(pipeline, stages)),
        pyfunc_loader=pyfunc_loader,
    )


def left_out_stages(pipeline: Pipeline, report_stages: Sequence[str]) -> list[str]:
    """The stages a trial does not run, in pipeline order: none of the metric's stages depends on them.

    Why: these are comparison branches (a compute-matched baseline, a student trained without its
    teacher) that a `relay run` adds beside the generations. The scheduler ranks trials on the
    generations' metric only, so such a branch could not change which trial wins, and in every trial
    it would add its own training (a compute-matched baseline as long as all the generations
    together). A trial runs what its reports need; `relay run best.yaml` runs the whole pipeline.
    """
    needed = set(report_stages).union(*(pipeline.upstream(name) for name in report_stages))
    return [stage.name for stage in pipeline.stages if stage.name not in needed]


def left_out_note(plan: SweepPlan) -> str | None:
    """The line a sweep says at its start when its trials leave stages out (``left_out_stages``), else None."""
    if not plan.left_out:
        return None
    return (
        f"sweep {plan.name}: trials do not run {', '.join(plan.left_out)}: trials are ranked on "
        f"{plan.settings.metric} of each generation, which does not depend on them, and running them in every "
        "trial would add their compute to each; `relay run` of the sweep's best.yaml runs them for the best values"
    )


SWEEP_RECORD = "sweep.json"  # beside a trial's ledger: its sweep's name, folder and pipeline kind


def sweep_record(plan: SweepPlan) -> dict[str, str]:
    """What a trial records of its sweep, so that `relay runs` finds the sweep's config wherever it was written.

    Why: a trial keeps no config of its own; its sweep's config was looked for in WORKSPACE/tune/SWEEP
    only, so the trials of a sweep written with `--output` showed the config's name for their pipeline
    and no best metric.
    """
    return {"sweep": plan.name, "folder": plan.output, "pipeline": plan.pipeline_kind}


def with_seed(settings: TuneSettings, seed: int) -> TuneSettings:
    """The settings with the seed the sweep uses: `tune.seed`, or the config's `seed` when it is left out.

    One resolved value for the search, the grid's order and what the sweep logs: MLflow logged
    `tune.seed` as None for a sweep seeded by the config's seed.
    """
    return settings if settings.seed is not None else settings.model_copy(update={"seed": seed})


def with_sweep_run(plan: SweepPlan, sweep_run_id: str | None) -> SweepPlan:
    return dataclasses.replace(plan, sweep_run_id=sweep_run_id)
