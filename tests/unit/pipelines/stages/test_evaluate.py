"""The evaluate stage's helpers: which classes make up the tail."""

from __future__ import annotations

import pyarrow as pa

from pipelines.split import SPLIT_SCHEMA
from pipelines.stages.evaluate import training_counts


def test_training_counts_add_the_unlabeled_pool_and_skip_unknown_labels() -> None:
    rows = [(0, 0, "labeled"), (1, 1, "labeled"), (2, 1, "unlabeled"), (3, 0, "unlabeled"), (4, 0, "unlabeled")]
    rows += [(5, -1, "unlabeled"), (6, 1, "test")]  # an image without a label; the test set never counts
    split = pa.table(
        {"sample_id": [r[0] for r in rows], "label": [r[1] for r in rows], "subset": [r[2] for r in rows]},
        schema=SPLIT_SCHEMA,
    )
    assert training_counts(split, 3) == [3, 2, 0]


def test_per_class_results_name_the_datasets_classes_of_a_relabelled_subset() -> None:
    """Transfer's new task is digits 5-9, relabelled 0-4: its recall/5 is digit 5, not position 5."""
    from types import SimpleNamespace

    from pipelines.stages.evaluate import class_names

    assert class_names(SimpleNamespace(classes=[5, 6, 7, 8, 9]), 5) == [5, 6, 7, 8, 9]
    assert class_names(SimpleNamespace(classes=None), 3) == [0, 1, 2]


def test_tail_recall_leaves_out_a_tail_class_without_test_images(caplog) -> None:
    """A test folder without the rarest class read tail_recall 0.0 (scikit-learn's fill-in) beside balanced 1."""
    from pipelines.stages.evaluate import tail_recall

    recall = [1.0, 1.0, 0.5, 0.0]  # class 3 has no test image: its 0.0 is no measurement
    assert tail_recall(recall, [3, 2], {0, 1, 2}, [0, 1, 2, 3], "g00/evaluate") == 0.5
    assert "tail class(es) 3 have no test image; tail_recall is the mean over the others" in caplog.text
    assert tail_recall(recall, [3], {0, 1, 2}, [0, 1, 2, 3], "g00/evaluate") is None
    assert "tail_recall is not measured" in caplog.text
    assert tail_recall(recall, [2, 1], {0, 1, 2, 3}, [0, 1, 2, 3], "g00/evaluate") == 0.75
