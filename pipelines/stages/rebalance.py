"""The `rebalance` stage: CReST's class-rebalanced picks from the pseudo-label table.

See docs/ALGORITHMS.md, CReST and CReST+: rarer classes keep a larger share of their pseudo-labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from orchestrator.dag import StageContext, StageResult
from pipelines.sampling import crest_rates, select_crest
from pipelines.stages.common import (
    artifact,
    labeled_class_counts,
    num_classes_of,
    output_name,
    picks_files,
    picks_of,
    predictions,
)


def rebalance_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """CReST: keep the most confident fraction mu_l of each predicted class, more of rarer classes."""
    split = artifact(inputs, params, "split")
    table = artifact(inputs, params, "pseudo_labels")
    num_classes = num_classes_of(params["data"])
    rates = crest_rates(labeled_class_counts(split, num_classes).tolist(), params["alpha"])
    pred, confidence = predictions(table)
    rows = select_crest(pred, confidence, rates, params["selection"], np.random.default_rng(ctx.seed))
    picks, kept, metrics = picks_of(table, rows, split, num_classes, params["generation"])
    metrics.update({f"rate/{c}": float(r) for c, r in enumerate(rates)})
    files = picks_files(pred, kept, picks, num_classes, "rebalancing")
    return StageResult(outputs={output_name(params, "picks"): picks}, metrics=metrics, files=files)
