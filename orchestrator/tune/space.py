"""Search-space values: how Relay's domains become Ray Tune's, and how sampled values are kept in them.

Pure functions over ``SearchDomain``s (Ray is imported only to build its domains), shared by
the plan (probing each key before any trial), the schedulers (PBT's explore leaves a range)
and the sweep (the grid's order, the best config).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.config import RunSettings, SearchDomain, TuneSettings, apply_overrides, resolve_workspace

INTERIOR = 0.4142  # where a continuous range is probed: an arbitrary non-integral fraction


def probe_values(domain: SearchDomain) -> list[Any]:
    """Values that stand for a domain: every listed value, both ends, and a non-integral interior point."""
    if domain.kind in ("choice", "grid"):
        return list(domain.args)
    low, high = domain.args
    if domain.kind == "randint":
        return [low, high]
    return [low, high, low + (high - low) * INTERIOR]


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
        clipped[key] = round(value) if domain.kind == "randint" else float(value)
    return clipped


def _nearest(value: Any, options: Sequence[Any]) -> Any:
    numbers = [o for o in options if isinstance(o, (int, float)) and not isinstance(o, bool)]
    if isinstance(value, (int, float)) and numbers:
        return min(numbers, key=lambda o: abs(o - value))
    return options[0]


def param_space(space: Mapping[str, SearchDomain]) -> dict[str, Any]:
    """Relay domains -> Ray Tune domains (randint's high is inclusive in Relay, exclusive in Ray)."""
    from ray import tune

    makers = {
        "choice": lambda a: tune.choice(list(a)),
        "grid": lambda a: tune.grid_search(list(a)),
        "randint": lambda a: tune.randint(a[0], a[1] + 1),
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
    }
    return {key: makers[domain.kind](domain.args) for key, domain in space.items()}


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


def total_trials(settings: TuneSettings) -> int:
    """Trials the sweep will have: num_samples, times the grid's size when there are grid keys."""
    grid = math.prod(len(d.args) for d in settings.space.values() if d.kind == "grid")
    return settings.num_samples * grid


def best_config(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The base config with the best values applied and the `tune:` section removed: `relay run` takes it.

    `run.workspace` is written absolute, as the sweep resolved it (the setting, else $RELAY_WORKSPACE,
    else ./relay-workspace; ``data.root`` is pinned so already): the sweep prints `relay run
    /abs/.../best.yaml`, and from another folder a relative `ws`, or a workspace that came from the
    sweep's environment, named a new, empty workspace, without the sweep's cached stages, its
    winner registered in another MLflow store.
    """
    config = apply_overrides(data, dict(values))
    config.pop("tune", None)
    workspace = (config.get("run") or {}).get("workspace") or None
    return apply_overrides(config, {"run.workspace": str(resolve_workspace(RunSettings(workspace=workspace)))})
