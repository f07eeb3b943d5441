"""`relay data info` on a dataset a user wrote with pyarrow: what it takes, what it refuses (exit 2, one line)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from pipelines.datasets import shards

SHAPE = (1, 8, 8)


def write_by_hand(root: Path, labels: list[int | None], unlabeled: int) -> None:
    """What a user writes from the docs alone: shards by pq.write_table's defaults, dataset.json and its digest
    by the documented canonical JSON (no Relay function)."""
    (root / "train").mkdir(parents=True)
    n = len(labels)
    pixels = np.random.default_rng(0).integers(0, 256, (n, int(np.prod(SHAPE))), dtype=np.uint8)
    table = pa.table(
        {
            "sample_id": pa.array(np.arange(n), pa.int64()),
            "label": pa.array(labels, pa.int32()),
            "image": pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), pixels.shape[1]),
        }
    )
    pq.write_table(table, root / "train" / "part-00000.parquet")
    data = (root / "train" / "part-00000.parquet").read_bytes()
    shard = {
        "path": "train/part-00000.parquet",
        "rows": n,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    body = {
        "format": shards.FORMAT,
        "classes": ["a", "b", "c"],
        "image_shape": list(SHAPE),
        "encoding": "raw",
        "rows_per_group": 64,
        "splits": {"train": {"count": n, "unlabeled": unlabeled, "shards": [shard]}},
        "source": {"name": "mine"},
    }
    body["digest"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    (root / shards.MANIFEST).write_text(json.dumps(body))


def test_a_dataset_written_with_pyarrow_s_defaults_verifies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """It was refused: 'wrong schema: expected sample_id int64 not null, ...; got sample_id int64, ...'."""
    write_by_hand(tmp_path / "d", [i % 3 if i % 10 else None for i in range(150)], unlabeled=15)
    assert main(["data", "info", str(tmp_path / "d"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "150 images (15 without a label)" in out and "every image decodes" in out


def test_a_negative_label_exits_2_naming_the_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A label -1 was read as 'no label': info --verify said '0 without a label' and a run took the row as unlabeled."""
    write_by_hand(tmp_path / "d", [-1 if i == 7 else i % 3 for i in range(150)], unlabeled=0)
    assert main(["data", "info", str(tmp_path / "d"), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "train/part-00000.parquet row 7: label -1 is outside 0..2 (the manifest lists 3 classes" in err
    assert "an unknown label is null, not negative: write it as null" in err


def test_a_manifest_that_miscounts_rows_without_a_label_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_by_hand(tmp_path / "d", [None if i == 3 else i % 3 for i in range(150)], unlabeled=0)
    assert main(["data", "info", str(tmp_path / "d")]) == 2
    assert "split train lists 0 rows without a label, but its shards hold 1" in capsys.readouterr().err
