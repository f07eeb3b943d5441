"""Small sharded datasets written by the real writer: several shards and row groups, any encoding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.datasets import shards

SHAPE = (3, 6, 5)
CLASSES = ("a", "b", "c")


def toy_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images of SHAPE and labels in 0..2."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8), rng.integers(0, 3, n)


def write_toy(
    path: Path, n: int = 100, encoding: str = "raw", labels: np.ndarray | None = None, test: int = 0
) -> tuple[shards.DatasetManifest, np.ndarray, np.ndarray]:
    """A dataset at ``path`` in chunks of 7 rows, row groups of 8, shards of 3 groups: (manifest, images, labels)."""
    images, drawn = toy_images(n)
    labels = drawn if labels is None else labels
    chunks = [(images[s : s + 7], labels[s : s + 7]) for s in range(0, n, 7)]
    splits = {"train": chunks}
    if test:
        test_images, test_labels = toy_images(test, seed=1)
        splits["test"] = [(test_images, test_labels)]
    manifest = shards.write_dataset(
        str(path), CLASSES, SHAPE, encoding, splits, rows_per_group=8, groups_per_shard=3, source={"name": "toy"}
    )
    return manifest, images, labels


def rewrite_shard(root: Path, manifest: shards.DatasetManifest, index: int, table: pa.Table) -> shards.DatasetManifest:
    """Replace train shard ``index`` by ``table`` and re-seal the manifest around it: only the shard's content is wrong."""
    train = manifest.splits["train"]
    path = root / train.shards[index].path
    pq.write_table(table, path, row_group_size=manifest.rows_per_group)
    data = path.read_bytes()
    fixed = list(train.shards)
    fixed[index] = shards.Shard(fixed[index].path, fixed[index].rows, len(data), hashlib.sha256(data).hexdigest())
    splits = {**manifest.splits, "train": shards.SplitShards(train.count, train.unlabeled, tuple(fixed))}
    return shards.write_manifest(str(root), shards.DatasetManifest(**{**manifest.__dict__, "splits": splits}))


def break_image(root: Path, manifest: shards.DatasetManifest, index: int, row: int) -> shards.DatasetManifest:
    """Make row ``row`` of train shard ``index`` (a png dataset) bytes that do not decode; re-seal the manifest."""
    table = pq.read_table(root / manifest.splits["train"].shards[index].path)
    column = table.column("image").to_pylist()
    column[row] = b"\x89PNG broken"
    return rewrite_shard(
        root, manifest, index, table.set_column(2, table.schema.field(2), pa.array(column, pa.binary()))
    )
