"""The `rebalance` stage: CReST's class-rebalanced picks from the pseudo-label table.

See docs/ALGORITHMS.md, CReST and CReST+: rarer classes keep a larger share of their pseudo-labels.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from orchestrator.dag import StageContext, StageResult
from pipelines.sampling import crest_rates, select_crest
from pipelines.stages.common import (
    artifact,
    class_names,
    labeled_class_counts,
    num_classes_of,
    output_name,
    picks_files,
    picks_of,
    predictions,
)

logger = logging.getLogger(__name__)


def rebalance_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """CReST: keep the most confident fraction mu_l of each predicted class, more of rarer classes."""
    split = artifact(inputs, params, "split")
    table = artifact(inputs, params, "pseudo_labels")
    num_classes = num_classes_of(params["data"])
    ids = class_names(params["data"], num_classes)
    rates = crest_rates(labeled_class_counts(split, num_classes).tolist(), params["alpha"])
    pred, confidence = predictions(table)
    rows = select_crest(pred, confidence, rates, params["selection"], np.random.default_rng(ctx.seed))
    picks, kept, metrics = picks_of(table, rows, split, ids, params["generation"])
    metrics.update({f"rate/{ids[c]}": float(r) for c, r in enumerate(rates)})
    if len(rows) == 0:
        warn_nothing_kept(ctx.stage, len(pred), rates, params)
    files = picks_files(pred, kept, picks, ids, "rebalancing")
    return StageResult(outputs={output_name(params, "picks"): picks}, metrics=metrics, files=files)


def warn_nothing_kept(stage: str, offered: int, rates: Sequence[float], params: Mapping[str, Any]) -> None:
    """Say on the console that the rebalance kept nothing, and which setting does that.

    Why: a small crest.alpha makes every rate but the rarest class's about 0, so a model that
    predicts no image as that class leaves no picks; that is legal, but the next generation then
    trains on the labeled set alone, and only `kept_total 0` in MLflow said so.
    """
    logger.warning(
        "%s kept 0 of %d pseudo-labels (crest.alpha=%s, crest.selection=%s: keep rates %.3g to %.3g), "
        "so the next generation trains on the labeled set alone; raise crest.alpha to keep more",
        stage,
        offered,
        params["alpha"],
        params["selection"],
        min(rates),
        max(rates),
    )
