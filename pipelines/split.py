"""The data split every pipeline starts from, and the preflight check drawn from it.

Torch-free on purpose: drawing the split needs only labels, so the driver checks a config
(`relay validate`, the start of `relay run`) without importing torch; the stage bodies
(`pipelines.stages.split`: `split_data`, `split_supervised`) draw the very same table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.class_names import dataset_class_names
from pipelines.data import DatasetLabels, imagefolder_base, imagefolder_listings, sample_files
from pipelines.datasets.catalog import PinError, dataset_labels
from pipelines.datasets.shards import DatasetError
from pipelines.long_tail import check_splits_hold_images, long_tailed_split

SPLIT_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("subset", pa.string(), nullable=False),
    ]
)
# KE and distillation need no unlabeled images: their preflight caps labeled_fraction at this.
PROBE_FRACTION = 0.5
# select_classes' label for a row of a class the task leaves out (-1 already means "unknown label").
OUTSIDE_TASK = -2


def select_classes(labels: DatasetLabels, classes: Sequence[int] | None) -> DatasetLabels:
    """The labels of a task made of some of the dataset's classes: class ``classes[k]`` becomes ``k``.

    Other classes become OUTSIDE_TASK and are left out of every subset; unknown labels (-1) stay
    unknown, so they still join the unlabeled pool.

    Sample ids stay the dataset's, so two tasks of one dataset with disjoint classes never share an
    image (transfer learning's source and target, LwF's old and new task).
    """
    if classes is None:
        return labels
    outside = sorted({c for c in classes if not 0 <= c < labels.num_classes})
    if outside:
        raise ValueError(
            f"data.classes: classes {outside} are not classes of the dataset (0..{labels.num_classes - 1})"
        )
    mapping = np.full(labels.num_classes, OUTSIDE_TASK, dtype=np.int64)
    mapping[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))

    def relabel(values: np.ndarray) -> np.ndarray:
        return np.where(values >= 0, mapping[np.maximum(values, 0)], values)

    test = None if labels.test is None else relabel(labels.test)
    return DatasetLabels(relabel(labels.train), test, len(classes))


def split_table(data: Mapping[str, Any], labels: DatasetLabels, with_files: bool = True) -> pa.Table:
    """The long-tailed labeled/unlabeled split (CReST protocol) and the balanced test set as one table.

    Rows whose label is unknown (-1: a sharded dataset's null labels) cannot be drawn per class;
    they join the unlabeled pool, with label -1 in the table. With ``data["classes"]`` the task is
    those classes only, relabelled 0..k-1 (``select_classes``); the other classes' rows are left out.
    An image folder read in place (`data.root`) also gets each row's file (``with_files``: ``with_sample_files``).
    """
    labels = select_classes(labels, data.get("classes"))
    check_splits_hold_images(labels.train, labels.test, data)
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
        class_names=task_class_names(data),
    )
    if labels.test is not None:
        parts["test"] = np.flatnonzero(labels.test >= 0).astype(np.int64)
        test_labels = labels.test
    else:
        parts["test"] = parts.pop("holdout")
        test_labels = labels.train
    parts.pop("holdout", None)
    unknown = np.flatnonzero(labels.train == -1)
    if unknown.size:
        parts["unlabeled"] = np.sort(np.concatenate([parts["unlabeled"], unknown]))
    columns: dict[str, list] = {"sample_id": [], "label": [], "subset": []}
    for subset, ids in parts.items():
        source = test_labels if subset == "test" else labels.train
        columns["sample_id"].extend(ids.tolist())
        columns["label"].extend(source[ids].tolist())
        columns["subset"].extend([subset] * len(ids))
    table = pa.table(columns, schema=SPLIT_SCHEMA)
    return with_sample_files(table, data, labels.test is not None) if with_files else table


def task_class_names(data: Mapping[str, Any]) -> list[str]:
    """The names of the task's classes by their number in the split (`data.classes` relabels them 0..k-1); [] when
    the dataset's classes have numbers only. Why: a split error said "class 3 has 2 samples" of a folder named cat."""
    names = dataset_class_names(SimpleNamespace(**{key: data.get(key) for key in ("name", "root", "uri")}))
    classes = data.get("classes")
    if not names or classes is None:
        return list(names)
    return [names[c] if 0 <= c < len(names) else str(c) for c in classes]


def with_sample_files(table: pa.Table, data: Mapping[str, Any], own_test: bool) -> pa.Table:
    """An image folder's split table with ``path`` (the file under `data.root`) and ``class`` (its class folder).

    Why: a sample id is the image's position in the folder's listing, recorded nowhere else, so
    an id in the split or in the pseudo labels could not be traced to its photo. A test row is a
    file of the folder's test/ (or val/) when it has one (``own_test``), else of train/, as its id is.
    Other datasets keep the three columns: their sample ids are their own order.
    """
    if data.get("name") != "imagefolder":
        return table
    base = imagefolder_base(data.get("root"))
    files = sample_files(base, imagefolder_listings(base))
    ids = table.column("sample_id").to_pylist()
    subsets = table.column("subset").to_pylist()
    rows = [files["test" if own_test and subset == "test" else "train"][i] for i, subset in zip(ids, subsets)]
    table = table.append_column("path", pa.array([path for path, _ in rows], pa.string()))
    return table.append_column("class", pa.array([name for _, name in rows], pa.string()))


def preflight_split(data: Mapping[str, Any]) -> list[str]:
    """Draw the split before anything runs; return problems as `key: message` lines.

    Catches what only the data can tell (a missing root, a class too small for head_count,
    an empty unlabeled set; for a sharded dataset: no shards, an edited manifest, a shard with
    another size or schema, labels out of range) while nothing has been written yet.
    """
    try:
        labels = dataset_labels(data)
    except PinError as exc:  # data.digest itself is wrong, whatever data.uri holds: it heads its own line
        return [str(exc)]
    except DatasetError as exc:  # a sharded dataset that is missing, edited or malformed (a ValueError)
        return [f"data.uri: {exc}"]
    except (FileNotFoundError, ValueError) as exc:  # ValueError: an image folder with a file that is no image
        return [f"data.root: {exc}"]
    try:
        table = split_table(data, labels, with_files=False)
    except ValueError as exc:
        return [_data_problem(str(exc))]
    subsets = np.asarray(table.column("subset").to_pylist())
    if not np.any(subsets == "unlabeled"):
        return [
            "data.labeled_fraction: the split leaves no unlabeled images (an empty unlabeled set); use a value below 1"
        ]
    return []


def _data_problem(message: str) -> str:
    """A split check's ``message`` as a `key: message` line: headed by its own key (`data.class_order: ...`) as it
    is, else by the data section's.

    Why: every message was put after `data: `, and the user read `data: data.class_order: ...`.
    """
    head = message.partition(": ")[0]
    return message if head.startswith("data.") and " " not in head else f"data: {message}"


def preflight_supervised_split(data: Mapping[str, Any]) -> list[str]:
    """`preflight_split` for pipelines that need no unlabeled images (see PROBE_FRACTION)."""
    return preflight_split({**data, "labeled_fraction": min(data["labeled_fraction"], PROBE_FRACTION)})
