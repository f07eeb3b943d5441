"""Whether a sweep's trials could ever start: a trial's driver beside its widest stage on a local Ray, and
each `resources.*` value of its space against the check the base config passed.

A trial whose stage no node can ever place waits forever, so both are bad input (exit 2) found
before the sweep starts. How many trials run at once is the plan's (``fit_concurrency``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.config import (
    SearchDomain,
    apply_overrides,
    validate_config,
)
from orchestrator.dag import Pipeline
from orchestrator.engine.fit import stage_cpus_to_start
from orchestrator.errors import ConfigError, PipelineError


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
