"""Every problem of a sweep's config, found before anything runs: its space's keys and values, the stages
that report its metric, its scheduler's counts of generations.

Every key of the search space is applied with values standing for its domain, exactly as a
trial would apply it, so a bad key or value is one ConfigError (exit 2) before Ray starts; `relay
validate` runs the same ``sweep_check``. Apart from the plan: this is what a sweep is refused for,
the plan what a sweep that passed carries to its trials.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orchestrator.config import (
    SearchDomain,
    TuneSettings,
    apply_overrides,
    validate_config,
)
from orchestrator.dag import Pipeline
from orchestrator.errors import ConfigError, PipelineError
from orchestrator.tracking.run_tree import metric_prefix
from orchestrator.tune.space import probe_values


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
    if settings.population_based and settings.perturbation_interval >= generations:
        problems.append(
            f"tune.perturbation_interval: {settings.perturbation_interval} generations, but each trial has "
            f"{generations}, so no trial would ever be perturbed; set it below {generations}"
        )
    if settings.population_based and "seed" in settings.space:
        problems.append(
            f"tune.space.seed: seed cannot be perturbed by scheduler {settings.scheduler}: a trial's seed fixes every "
            "stage from its first generation, so a new one would not continue the generations it copied; "
            "search seed with scheduler asha, sha or none, or set seed in the config"
        )
    return problems


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
        problem = (
            fixed_key_problem(key)
            or _key_problem(base, key, domain, config_model, build, reference)
            or single_value_range_problem(key, domain)
        )
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


def one_value(domain: SearchDomain) -> bool:
    """Whether every trial gets the same value from ``domain``: a range whose ends are equal (Relay's randint
    includes both: `randint: [1, 1]` draws 1 only), or a list of one value."""
    if domain.kind in ("choice", "grid"):
        return all(value == domain.args[0] for value in domain.args)
    low, high = domain.args
    return low == high


def single_value_range_problem(key: str, domain: SearchDomain) -> str | None:
    """Why a range with equal ends is refused (`uniform: [0.6, 0.6]`), or None.

    Why refused: a range is there to be drawn from, so equal ends are a slip of the range, not a
    setting; the sweep ran every trial with the one value (`relay tune` ran 3 trials of t_min 0.5),
    and the key was said to be not read by the config (``inert_keys``), though it was. A list of one
    value is a way to pin a key of a kept space, and only warned of there.
    """
    if domain.kind in ("choice", "grid") or not one_value(domain):
        return None
    value = domain.args[0]
    if domain.kind == "randint":
        what = f"randint {list(domain.args)} draws only {value} (Relay's randint includes both ends)"
        widen = f"widen the range (randint [{value}, {value + 1}] draws {value} or {value + 1})"
    else:
        what = f"{domain.kind} {list(domain.args)} has low equal to high"
        widen = "widen the range (low < high)"
    return (
        f"tune.space.{key}: {what}, so every trial gets {key}={value} and the key tells no trials apart; "
        f"{widen}, or remove it from tune.space and set it in the config or on the command line ({key}={value})"
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


def repeated_grid_note(settings: Any) -> str | None:
    """A warning when ``num_samples`` repeats a grid whose every trial is drawn from no range: the repeats are copies.

    Why: each repeat of a grid point has the same values and the same seed, so its stages are cache hits
    of the first's and its scores the same (a reviewer's 2 x 2 grid scored 0.195 / 0.195 / 0.34 / 0.34, and
    best.yaml claimed a tie), while the README counts trials as num_samples times the grid's size.
    """
    space = settings.space
    if settings.num_samples < 2 or not space or "seed" in space or any(d.kind != "grid" for d in space.values()):
        return None
    return (
        f"tune.num_samples: {settings.num_samples} repeats each grid point with the same values and seed, so each "
        "repeat is a copy of the first (its stages cache hits, its scores the same); search the seed too "
        "(tune.space.seed: {grid: [0, 1]}) for repeats that differ, or set tune.num_samples: 1"
    )
