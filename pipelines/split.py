"""The data split every pipeline starts from, and the preflight check drawn from it.

Torch-free on purpose: drawing the split needs only labels, so the driver checks a config
(`relay validate`, the start of `relay run`) without importing torch; the stage bodies
(`stages.split_data`, `student_stages.split_supervised`) draw the very same table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.data import DatasetLabels, load_labels, long_tailed_split

SPLIT_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("subset", pa.string(), nullable=False),
    ]
)
# KE and distillation need no unlabeled images: their preflight caps labeled_fraction at this.
PROBE_FRACTION = 0.5


def select_classes(labels: DatasetLabels, classes: Sequence[int] | None) -> DatasetLabels:
    """The labels of a task made of some of the dataset's classes: class ``classes[k]`` becomes ``k``, others ``-1``.

    Sample ids stay the dataset's, so two tasks of one dataset with disjoint classes never share an
    image (transfer learning's source and target, LwF's old and new task).
    """
    if classes is None:
        return labels
    outside = sorted({c for c in classes if not 0 <= c < labels.num_classes})
    if outside:
        raise ValueError(
            f"classes {outside} are not classes of the dataset (0..{labels.num_classes - 1}); fix data.classes"
        )
    mapping = np.full(labels.num_classes, -1, dtype=np.int64)
    mapping[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
    test = None if labels.test is None else mapping[labels.test]
    return DatasetLabels(mapping[labels.train], test, len(classes))


def split_table(data: Mapping[str, Any], labels: DatasetLabels) -> pa.Table:
    """The long-tailed labeled/unlabeled split (CReST protocol) and the balanced test set as one table.

    With ``data["classes"]`` the task is those classes only, relabelled 0..k-1 (``select_classes``).
    """
    labels = select_classes(labels, data.get("classes"))
    rng = np.random.default_rng(data["fold"])
    holdout = 0 if labels.test is not None else data["holdout_per_class"]
    parts = long_tailed_split(
        labels.train,
        labels.num_classes,
        data["head_count"],
        data["imbalance_ratio"],
        data["labeled_fraction"],
        rng,
        holdout_per_class=holdout,
        class_order=data.get("class_order"),
    )
    if labels.test is not None:
        parts["test"] = np.flatnonzero(labels.test >= 0).astype(np.int64)
        test_labels = labels.test
    else:
        parts["test"] = parts.pop("holdout")
        test_labels = labels.train
    parts.pop("holdout", None)
    columns: dict[str, list] = {"sample_id": [], "label": [], "subset": []}
    for subset, ids in parts.items():
        source = test_labels if subset == "test" else labels.train
        columns["sample_id"].extend(ids.tolist())
        columns["label"].extend(source[ids].tolist())
        columns["subset"].extend([subset] * len(ids))
    return pa.table(columns, schema=SPLIT_SCHEMA)


def preflight_split(data: Mapping[str, Any]) -> list[str]:
    """Draw the split before anything runs; return problems as `key: message` lines.

    Catches what only the data can tell (a missing root, a class too small for head_count,
    an empty unlabeled set) while nothing has been written yet.
    """
    try:
        labels = load_labels(data["name"], data.get("root"))
    except FileNotFoundError as exc:
        return [f"data.root: {exc}"]
    try:
        table = split_table(data, labels)
    except ValueError as exc:
        return [f"data: {exc}"]
    subsets = np.asarray(table.column("subset").to_pylist())
    if not np.any(subsets == "unlabeled"):
        return [
            "data.labeled_fraction: the split leaves no unlabeled images (an empty unlabeled set); use a value below 1"
        ]
    return []


def preflight_supervised(data: Mapping[str, Any]) -> list[str]:
    """`preflight_split` for pipelines that need no unlabeled images (see PROBE_FRACTION)."""
    return preflight_split({**data, "labeled_fraction": min(data["labeled_fraction"], PROBE_FRACTION)})
