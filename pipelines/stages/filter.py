"""The `filter` stage: Noisy Student's confidence filter and per-class balancing.

See docs/ALGORITHMS.md, Noisy Student (steps 3 and 4).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from orchestrator.dag import StageContext, StageResult
from pipelines.sampling import filter_and_balance
from pipelines.stages.common import (
    artifact,
    class_names,
    num_classes_of,
    output_name,
    picks_files,
    picks_of,
    predictions,
)

logger = logging.getLogger(__name__)


def filter_pseudo_labels(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Noisy Student's data balancing: drop confidence < min, keep the top K per class, duplicate up to K.

    ``params["min_confidence_key"]`` is the config key the builder read ``min_confidence`` from
    (`noisy.min_confidence`), for the warning when nothing is kept: a pipeline that reuses this stage
    names its own key.
    """
    split = artifact(inputs, params, "split")
    table = artifact(inputs, params, "pseudo_labels")
    num_classes = num_classes_of(params["data"])
    per_class = params["per_class"] or max(1, table.num_rows // num_classes)
    pred, confidence = predictions(table)
    rows = filter_and_balance(
        pred, confidence, num_classes, params["min_confidence"], per_class, np.random.default_rng(ctx.seed)
    )
    ids = class_names(params["data"], num_classes)
    picks, kept, metrics = picks_of(table, rows, split, ids, params["generation"])
    metrics.update(
        {
            "kept_unique": float(len(np.unique(rows))),
            "per_class": float(per_class),
            "dropped_low_confidence": float(np.sum(confidence < params["min_confidence"])),
        }
    )
    if len(rows) == 0:
        warn_nothing_kept(ctx.stage, confidence, params["min_confidence"], params["min_confidence_key"])
    files = picks_files(pred, kept, picks, ids, "filtering")
    return StageResult(outputs={output_name(params, "picks"): picks}, metrics=metrics, files=files)


def warn_nothing_kept(stage: str, confidence: np.ndarray, min_confidence: float, key: str) -> None:
    """Say on the console that the filter kept nothing, and which setting (``key``, as the file names it) does that.

    Why: a min_confidence above every confidence (1.0 with hard labels, say) is legal, but the next
    student then trains on the labeled images alone, and only `kept_total 0` in MLflow said so. The
    key comes from the caller: named here, it told a pipeline reusing the filter to set `noisy.*`.
    """
    highest = f"{float(confidence.max()):.3f}" if confidence.size else "none: the table is empty"
    logger.warning(
        "%s kept 0 of %d pseudo-labels: none reaches %s=%s (highest confidence %s), "
        "so the next student trains on the labeled images alone; lower %s to keep some",
        stage,
        confidence.size,
        key,
        min_confidence,
        highest,
        key,
    )
