"""Small sharded datasets written by the real writer: several shards and row groups, any encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
