"""What the builders share: generation names, the split artifact, and the data preflight checks.

Builders turn a validated config into a static DAG (`orchestrator.dag.Pipeline`) and import no
torch: they name stage bodies through `pipelines.stages.refs`, whose modules are imported only
where a stage runs. Stages are made with `refs.make_stage`.
"""

from __future__ import annotations

from typing import Any

from pipelines import split

SPLIT = "data/split"  # the split table every pipeline starts from (stage and artifact share the name)
BASELINE_PREFIX = "baseline_"  # metrics of a side branch logged in a generation's run

# `relay generations` columns (header -> `<stage role>/<metric>`) that several pipelines show.
ACCURACY_COLUMNS = {"balanced_accuracy": "evaluate/balanced_accuracy"}
LONG_TAIL_COLUMNS = {
    **ACCURACY_COLUMNS,
    "tail_recall": "evaluate/tail_recall",
    "pseudo_label_accuracy": "pseudo_label/accuracy",
}


def gen(k: int, role: str) -> str:
    """Stage and artifact names of generation k: `g03/train`, `g03/model`."""
    return f"g{k:02d}/{role}"


def preflight_semi_supervised(config: Any) -> list[str]:
    """Problems only the data can reveal (a missing root, too few images, no unlabeled set), as `key: message` lines."""
    return split.preflight_split(config.data.model_dump())


def preflight_supervised(config: Any) -> list[str]:
    """The same check for pipelines that need no unlabeled images (KE, distillation)."""
    return split.preflight_supervised(config.data.model_dump())
