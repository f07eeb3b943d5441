"""What the four builders share: generation names, the split artifact, and the stage constructor.

Builders turn a validated config into a static DAG (`orchestrator.dag.Pipeline`) and import no
torch: they name stage bodies through `pipelines.stages.refs`, whose modules are imported only
where a stage runs.
"""

from __future__ import annotations

from typing import Any

from orchestrator.dag import Parallelism, Stage
from pipelines.schema import StageResources
from pipelines.stages.refs import make_stage

SPLIT = "data/split"  # the split table every pipeline starts from (stage and artifact share the name)
BASELINE_PREFIX = "baseline_"  # metrics of a side branch logged in a generation's run


def gen(k: int, role: str) -> str:
    """Stage and artifact names of generation k: `g03/train`, `g03/model`."""
    return f"g{k:02d}/{role}"


def stage(
    name: str,
    fn: Any,
    io: dict[str, str],
    outputs: tuple[str, ...],
    params: dict,
    resources: StageResources,
    generation: int | None,
    parallelism: Parallelism = Parallelism.DATA,
) -> Stage:
    """`refs.make_stage` with a config's StageResources section (what the stage asks Ray for)."""
    return make_stage(name, fn, io, outputs, params, resources.model_dump(), generation, parallelism)
