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
