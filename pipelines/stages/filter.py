"""The `filter` stage: Noisy Student's confidence filter and per-class balancing.

See docs/ALGORITHMS.md, Noisy Student (steps 3 and 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.dag import StageContext, StageResult
from pipelines import plots
from pipelines.sampling import filter_and_balance
from pipelines.stages.common import artifact, num_classes_of, output_name, picks_of, predictions
from pipelines.stages.rebalance import table_csv


def filter_pseudo_labels(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Noisy Student's data balancing: drop confidence < min, keep the top K per class, duplicate up to K."""
    split = artifact(inputs, params, "split")
    table = artifact(inputs, params, "pseudo_labels")
    num_classes = num_classes_of(params["data"])
    per_class = params["per_class"] or max(1, table.num_rows // num_classes)
    pred, confidence = predictions(table)
    rows = filter_and_balance(
        pred, confidence, num_classes, params["min_confidence"], per_class, np.random.default_rng(ctx.seed)
    )
    picks, kept, metrics = picks_of(table, rows, split, num_classes, params["generation"])
    metrics.update(
        {
            "kept_unique": float(len(np.unique(rows))),
            "per_class": float(per_class),
            "dropped_low_confidence": float(np.sum(confidence < params["min_confidence"])),
        }
    )
    files = picks_files(pred, kept, picks, num_classes)
    return StageResult(outputs={output_name(params, "picks"): picks}, metrics=metrics, files=files)


def picks_files(pred: np.ndarray, kept: np.ndarray, picks: pa.Table, num_classes: int) -> dict[str, bytes]:
    """The files a selection of pseudo-labels logs: per-class counts before and after it, and the picks.

    The same two files as CReST's rebalance stage, so a Noisy Student generation shows in MLflow
    what its filter kept (`filter/picks.csv`) instead of only the kept/<c> numbers.
    """
    before = np.bincount(pred, minlength=num_classes).tolist()
    return {
        "pseudo_label_histogram.png": plots.class_histogram(before, kept.tolist()),
        "picks.csv": table_csv(picks),
    }
