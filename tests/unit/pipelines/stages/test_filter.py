"""The filter stage: Noisy Student's confidence filter and balancing to K per class, and its metrics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pipelines.pseudo_label import to_table
from pipelines.schema import DataSection
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import filter as filter_stage
from tests.unit.pipelines.helpers import ctx

FILTER_PARAMS = {
    "io": {"split": "s", "pseudo_labels": "p", "picks": "k"},
    "data": DataSection(name="synthetic"),
    "min_confidence": 0.7,
    "per_class": 2,
    "generation": 0,
}


def unlabeled_split(labels: list[int]) -> pa.Table:
    """A split whose every row (ids 0..n-1, these true labels) is unlabeled: what the filter scores its picks on."""
    n = len(labels)
    return pa.table({"sample_id": list(range(n)), "label": labels, "subset": ["unlabeled"] * n}, schema=SPLIT_SCHEMA)


def test_filter_stage_balances_to_k_and_scores_the_picks() -> None:
    # confidences: class 0 -> ids 0 (.9), 1 (.8), 4 (.75), 2 (.7); class 1 -> id 3 (.8); id 5 (.6) is below 0.7
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.75, 0.25], [0.6, 0.4]], dtype=np.float32)
    table = to_table([0, 1, 2, 3, 4, 5], probs, 0, "m")
    split, params = unlabeled_split([0, 1, 0, 1, 0, 0]), FILTER_PARAMS
    result = filter_stage.filter_pseudo_labels(ctx(), {"s": split, "p": table}, params)
    picks = result.outputs["k"]
    assert sorted(picks.column("sample_id").to_pylist()) == [0, 1, 3, 3], "top 2 of class 0; class 1 duplicated to K"
    assert picks.column("label").to_pylist() == [0, 0, 1, 1]
    metrics = result.metrics
    assert (metrics["kept/0"], metrics["kept/1"], metrics["kept_total"], metrics["kept_unique"]) == (2.0, 2.0, 4.0, 3.0)
    assert metrics["dropped_low_confidence"] == 1.0
    assert metrics["picks_accuracy"] == pytest.approx(0.75), "id 1 is truly class 1 but picked as 0"


def test_filter_stage_logs_its_picks_and_histogram_as_crest_rebalance_does() -> None:
    """Before, the filter logged only numbers; a generation's MLflow run now shows what it kept."""
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    table = to_table([0, 1, 2, 3], probs, 0, "m")
    split, params = unlabeled_split([0, 0, 1, 1]), FILTER_PARAMS
    result = filter_stage.filter_pseudo_labels(ctx(), {"s": split, "p": table}, params)
    assert set(result.files) == {"picks.csv", "pseudo_label_histogram.png"}
    logged = pacsv.read_csv(pa.BufferReader(result.files["picks.csv"]))
    picks = result.outputs["k"]
    assert logged.column_names == picks.column_names, "the CSV is the picks table the student reads"
    assert logged.column("sample_id").to_pylist() == picks.column("sample_id").to_pylist() == [0, 1, 2, 2]
    assert logged.column("confidence").to_pylist() == pytest.approx(picks.column("confidence").to_pylist())
    assert result.files["pseudo_label_histogram.png"].startswith(b"\x89PNG")
