"""A selection of pseudo-labels that keeps nothing says so on the console, names the setting, and does not fail.

Why: `noisy.min_confidence=1.0` with hard labels (Noisy Student's filter) or a tiny `crest.alpha`
(CReST's rebalance) left no pseudo-label at all, and the next generation trained on the labeled
images alone with nothing on the console: only `kept_total 0` in MLflow said so.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from pipelines.pseudo_label import to_table
from pipelines.registry import PIPELINES
from pipelines.schema import DataSection
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import filter as filter_stage
from pipelines.stages import rebalance as rebalance_stage
from pipelines.stages import refs
from tests.unit.pipelines.helpers import config, ctx

CLASSES = 10
DATA = DataSection(name="synthetic")  # 10 classes
IO = {"split": "s", "pseudo_labels": "p", "picks": "k"}


def split_of(labeled: list[int], unlabeled: list[int]) -> pa.Table:
    """Labeled rows first, then unlabeled ones, ids 0..n-1 in order (the split keeps ids sorted)."""
    labels = labeled + unlabeled
    subsets = ["labeled"] * len(labeled) + ["unlabeled"] * len(unlabeled)
    return pa.table({"sample_id": list(range(len(labels))), "label": labels, "subset": subsets}, schema=SPLIT_SCHEMA)


def class0_table(ids: list[int], confidence: float) -> pa.Table:
    """A pseudo-label table predicting class 0 for every id with this confidence."""
    probs = np.full((len(ids), CLASSES), (1.0 - confidence) / (CLASSES - 1), dtype=np.float32)
    probs[:, 0] = confidence
    return to_table(ids, probs, 0, "m")


def filter_params(min_confidence: float, key: str = "noisy.min_confidence") -> dict:
    return {
        "io": IO,
        "data": DATA,
        "min_confidence": min_confidence,
        "min_confidence_key": key,
        "per_class": 2,
        "generation": 0,
    }


def test_filter_that_keeps_nothing_warns_naming_min_confidence(caplog: pytest.LogCaptureFixture) -> None:
    split = split_of([0, 1], [0, 0, 0, 0])
    table = class0_table([2, 3, 4, 5], 0.9)
    params = filter_params(1.0)
    with caplog.at_level(logging.WARNING):
        result = filter_stage.filter_pseudo_labels(ctx("g00/filter"), {"s": split, "p": table}, params)
    assert result.metrics["kept_total"] == 0.0, "still a metric"
    assert "picks_accuracy" not in result.metrics, "no picks, no accuracy: '-' in the table, not 0"
    assert result.outputs["k"].num_rows == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "g00/filter kept 0 of 4 pseudo-labels: none reaches noisy.min_confidence=1.0 (highest confidence 0.900), "
        "so the next student trains on the labeled images alone; lower noisy.min_confidence to keep some"
    ]


def test_a_pipeline_reusing_the_filter_is_told_its_own_key(caplog: pytest.LogCaptureFixture) -> None:
    """The key was Noisy Student's in the message itself: a self-training pipeline was told to lower `noisy.*`."""
    table = class0_table([2, 3], 0.9)
    with caplog.at_level(logging.WARNING):
        filter_stage.filter_pseudo_labels(
            ctx("g00/filter"), {"s": split_of([0, 1], [0, 0]), "p": table}, filter_params(0.95, "selftrain.threshold")
        )
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "none reaches selftrain.threshold=0.95" in warning and "lower selftrain.threshold to keep some" in warning
    assert "noisy" not in warning


def test_noisy_students_filter_stages_name_its_key() -> None:
    spec = PIPELINES["noisy_student"]
    stages = spec.build(config(spec.config_model, **{"noisy.iterations": 2})).stages
    filters = [stage for stage in stages if stage.fn == refs.filter_pseudo_labels]
    assert len(filters) == 2
    assert all(stage.params["min_confidence_key"] == "noisy.min_confidence" for stage in filters)


def test_filter_that_keeps_some_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    split = split_of([0, 1], [0, 0])
    params = filter_params(0.5)
    with caplog.at_level(logging.WARNING):
        filter_stage.filter_pseudo_labels(ctx("g00/filter"), {"s": split, "p": class0_table([2, 3], 0.9)}, params)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_rebalance_that_keeps_nothing_warns_naming_alpha(caplog: pytest.LogCaptureFixture) -> None:
    # class 0 has 10 labeled images, every other class 1: with alpha 0.05 class 0 keeps a share of about 1e-20,
    # and the model predicts class 0 for every unlabeled image
    labeled = [0] * 10 + list(range(1, CLASSES))
    split = split_of(labeled, [0, 0, 0, 0])
    first = len(labeled)
    table = class0_table(list(range(first, first + 4)), 0.9)
    params = {"io": IO, "data": DATA, "alpha": 0.05, "selection": "bernoulli", "generation": 0}
    with caplog.at_level(logging.WARNING):
        result = rebalance_stage.rebalance_generation(ctx("g00/rebalance"), {"s": split, "p": table}, params)
    assert result.metrics["kept_total"] == 0.0, "still a metric"
    assert "picks_accuracy" not in result.metrics
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "g00/rebalance kept 0 of 4 pseudo-labels (crest.alpha=0.05, crest.selection=bernoulli"
    )
    assert warnings[0].endswith("raise crest.alpha to keep more")
