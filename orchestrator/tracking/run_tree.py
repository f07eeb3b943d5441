"""The run tree's layout: which run, metric key, step, file folder and model alias a stage's results get.

Apart from the tracker because these are pure naming rules, read by more than the tracker: a sweep's
plan and trials key their reports by ``metric_prefix``, `relay run` reads the pipeline run's keys by
``parent_keys``, the Python API tells a generation's own stages by ``is_generation_stage``. None of
them needs an MLflow client, and none of them should import the tracker to learn a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.config import dotted
from orchestrator.tracking import lineage

EVALUATION_ROLE = "evaluate"  # the stage role whose metrics score the model it read (``evaluated_model``)
PROBE_ROLE = "probe"  # a linear probe's role: its score is a result even outside every generation
GENERATION_PARAM = "generation"  # a generation run's index among its params: a column of MLflow's compare view


def metric_prefix(stage_name: str) -> str:
    """Key prefix for a stage's metrics on generation and parent runs.

    The last path segment (``g03/evaluate`` -> ``evaluate``), so the same
    metric lines up across generations on the parent's step axis.
    """
    return stage_name.rsplit("/", 1)[-1]


def parent_keys(stage_name: str, generation: int | None) -> tuple[int, str] | None:
    """(step, key prefix) of a stage's metrics on the pipeline run, or None where they stay on the stage's own run.

    A generation's stage logs at step = generation under its role (``evaluate/balanced_accuracy``).
    A probe outside every generation (``pretext/probe``, the pretext encoder's linear probe) keeps
    its whole name (``pretext/probe/balanced_accuracy``: a `probe: [g00/train]` logs
    ``probe/balanced_accuracy`` at the same step) at step 0, so it reads as the first generation's
    row, the one its encoder starts. Why: its score reached only its own stage run, so neither the
    pipeline run nor a table showed what README sells the pretext config for. The other stages
    outside the generations (the split's counts, the pretraining's loss) are bookkeeping: they stay
    on their own run.
    """
    if generation is not None:
        return generation, metric_prefix(stage_name)
    if metric_prefix(stage_name) == PROBE_ROLE:
        return 0, stage_name
    return None


def is_generation_stage(stage_name: str, generation: int | None) -> bool:
    """Whether the stage is its generation's own (``g01/train``), not a side branch placed in it (``kd/train``).

    Builders put comparison baselines (``kd/``, ``baseline/``, ``finetune/``, ``joint/``) in a
    generation so their metrics land beside the generation's; only the ``gNN/`` stages make the
    model and plots that ``gen-NN`` stands for.
    """
    return generation is not None and stage_name.startswith(f"g{generation:02d}/")


def file_role(stage_name: str, generation: int | None) -> str:
    """The folder of a stage's files on its generation run and the key of its plots on the parent.

    A generation's own stage writes under its role (``evaluate/per_class.png``); a side branch
    keeps its whole name (``kd/evaluate/per_class.png``), so its plot neither replaces the
    generation's on ``gen-NN`` nor adds a second image at the same step on the parent.
    """
    return metric_prefix(stage_name) if is_generation_stage(stage_name, generation) else stage_name


def model_aliases(stage_name: str, generation: int) -> list[str]:
    """Aliases for a model a stage of ``generation`` wrote, before ``newest`` is decided.

    ``gen-NN`` names the generation's own model (README: ``init.source: models:/NAME@gen-00``);
    a side branch's model gets its role in front (``kd-gen-01``), so it never takes that name.
    """
    if is_generation_stage(stage_name, generation):
        return [lineage.model_alias(generation)]
    role = re.sub(r"[^\w-]", "-", stage_name.split("/", 1)[0])
    return [f"{role}-{lineage.model_alias(generation)}"]


def generation_params(params: Mapping[str, str], generation: int) -> dict[str, str]:
    """A generation run's params: the pipeline's (its parent's), with the generation's index.

    Why: the params were on the parent only, so MLflow's compare view of generation runs (of one
    run, or across runs and sweep trials) had no columns to line them up by. Its stages read their
    settings from this config, so the whole of it describes the generation as it describes the run.
    """
    return {**params, GENERATION_PARAM: str(generation)}


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} for MLflow params (``config.dotted``, `relay diff`'s keys too)."""
    return {name: str(value) for name, value in dotted(config).items()}


def metric_points(metrics: Mapping[str, float], step: int) -> list[tuple[str, float, int]]:
    return [(k, v, step) for k, v in metrics.items()]


def series_points(series: Iterable[tuple[int, Mapping[str, float]]]) -> list[tuple[str, float, int]]:
    return [(k, v, step) for step, values in series for k, v in values.items()]


def summary_points(
    metrics: Mapping[str, float], series: Iterable[tuple[int, Mapping[str, float]]]
) -> list[tuple[str, float, int]]:
    """A stage run's curves and its final metrics: a final value of a curve goes at the curve's last step.

    Logged at step 0 it would start the curve with its own end (a training loss that seems to begin
    where it finished); a final value the curve already ends with is not logged twice.
    """
    points = series_points(series)
    last: dict[str, tuple[int, float]] = {}
    for key, value, step in points:
        if key not in last or step >= last[key][0]:
            last[key] = (step, value)
    finals = [(k, v, last[k][0] if k in last else 0) for k, v in metrics.items() if last.get(k, (0, None))[1] != v]
    return points + finals
