"""The shard format: what is written reads back bit for bit, and every kind of damage is named by shard and row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.datasets import checks, shards
from pipelines.datasets.rows import ShardRows
from tests.unit.pipelines.datasets.toy import SHAPE, break_image, rewrite_shard, toy_images, write_toy


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_round_trip_in_any_order_with_duplicates(tmp_path: Path, encoding: str) -> None:
    manifest, images, labels = write_toy(tmp_path / "d", n=100, encoding=encoding)
    assert shards.read_manifest(str(tmp_path / "d")) == manifest
    assert len(manifest.splits["train"].shards) == 5  # 100 rows / (3 groups x 8 rows)
    ids = np.array([99, 0, 57, 57, 24, 23, 1])
    assert np.array_equal(ShardRows(str(tmp_path / "d"), manifest, "train").read(ids), images[ids])
    assert np.array_equal(checks.read_labels(str(tmp_path / "d"), manifest, "train"), labels)
    checks.verify_digests(str(tmp_path / "d"), manifest)


def test_unknown_labels_are_null_on_disk_and_minus_one_when_read(tmp_path: Path) -> None:
    labels = np.array([0, -1, 2, -1] * 5)
    manifest, _, _ = write_toy(tmp_path / "d", n=20, labels=labels)
    assert manifest.splits["train"].unlabeled == 10
    table = pq.read_table(tmp_path / "d" / manifest.splits["train"].shards[0].path)
    assert table.column("label").null_count == 10  # all 20 rows fit the first shard
    assert np.array_equal(checks.read_labels(str(tmp_path / "d"), manifest, "train"), labels)


def test_a_uri_without_shards_says_how_to_make_them(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(shards.DatasetError, match=r"no shards here .*relay data import SOURCE"):
        shards.read_manifest(str(tmp_path / "empty"))


def test_a_path_that_does_not_exist_is_said_so(tmp_path: Path) -> None:
    """It was told that no shards were there and to create the dataset, as if the path were right."""
    missing = tmp_path / "typo"
    with pytest.raises(shards.DatasetError) as refused:
        shards.read_manifest(str(missing))
    assert str(refused.value).startswith(f"{missing} does not exist (no such path): check the path, or make ")
    assert "no shards here" not in str(refused.value) and not missing.exists()


def test_shards_without_a_manifest_point_to_how_to_write_one(tmp_path: Path) -> None:
    """It said Relay reads only what `relay data import` writes, while docs/CONTRACTS.md shows how to write a
    dataset yourself: shards need its manifest."""
    write_toy(tmp_path / "d")
    (tmp_path / "d" / shards.MANIFEST).unlink()
    with pytest.raises(shards.DatasetError) as refused:
        shards.read_manifest(str(tmp_path / "d"))
    said = str(refused.value)
    assert "no Relay dataset here" in said and "'Writing a dataset yourself'" in said, said
    assert "Relay reads only what" not in said


def test_an_edited_manifest_fails_its_digest(tmp_path: Path) -> None:
    write_toy(tmp_path / "d")
    path = tmp_path / "d" / shards.MANIFEST
    data = json.loads(path.read_text())
    data["classes"] = ["a", "b", "z"]
    path.write_text(json.dumps(data))
    with pytest.raises(shards.DatasetError, match=r"dataset.json: the manifest's digest .* does not match"):
        shards.read_manifest(str(tmp_path / "d"))


def test_a_missing_or_resized_shard_is_named(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d")
    first, second = (tmp_path / "d" / s.path for s in manifest.splits["train"].shards[:2])
    first.unlink()
    second.write_bytes(second.read_bytes() + b"x")
    with pytest.raises(shards.DatasetError) as info:
        checks.read_labels(str(tmp_path / "d"), manifest, "train")
    assert "train/part-00000.parquet: the shard is missing" in str(info.value)
    assert "train/part-00001.parquet: " in str(info.value) and "bytes, the manifest says" in str(info.value)


def test_a_shard_with_a_wrong_schema_is_named(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d")
    table = pq.read_table(tmp_path / "d" / manifest.splits["train"].shards[1].path)
    table = table.set_column(1, "label", table.column("label").cast(pa.int64()))
    manifest = rewrite_shard(tmp_path / "d", manifest, 1, table)
    with pytest.raises(
        shards.DatasetError, match=r"part-00001.parquet: wrong schema: expected .*label int32.*got .*label int64"
    ):
        checks.read_labels(str(tmp_path / "d"), manifest, "train")


def test_labels_out_of_range_name_shard_and_row(tmp_path: Path) -> None:
    """The reader's check, on a shard written by pyarrow (the writer refuses such labels itself)."""
    manifest, _, _ = write_toy(tmp_path / "d", labels=np.zeros(100, dtype=np.int64))
    table = pq.read_table(tmp_path / "d" / manifest.splits["train"].shards[1].path)  # rows 24..47
    labels = [0] * table.num_rows
    labels[6], labels[7], labels[9] = 3, 7, None  # rows 6 and 7 are outside 0..2; a null is unknown
    table = table.set_column(1, table.schema.field(1), pa.array(labels, pa.int32()))
    manifest = rewrite_shard(tmp_path / "d", manifest, 1, table)
    with pytest.raises(shards.DatasetError, match=r"part-00001.parquet row 6: label 3 is outside 0..2 .*2 such rows"):
        checks.read_labels(str(tmp_path / "d"), manifest, "train")


@pytest.mark.parametrize(("bad", "label"), [(3, 3), (-2, -2)])
def test_the_writer_refuses_a_label_outside_the_classes_and_leaves_nothing(
    tmp_path: Path, bad: int, label: int
) -> None:
    """Written, such a dataset was refused only later, by `relay data info --verify` or a run's preflight."""
    labels = np.zeros(100, dtype=np.int64)
    labels[[30, 33]] = [bad, -1]  # -1 marks an unknown label: taken
    with pytest.raises(
        shards.DatasetError,
        match=rf"^train row 30: label {label} is outside 0..2 \(the dataset has 3 classes; -1 marks an unknown label\)",
    ):
        write_toy(tmp_path / "d", labels=labels)  # shards of 24 rows: shard 0 was written before row 30 came
    assert not (tmp_path / "d").exists()


def test_the_writer_takes_minus_one_as_unknown(tmp_path: Path) -> None:
    labels = np.zeros(100, dtype=np.int64)
    labels[[5, 99]] = -1
    manifest, _, _ = write_toy(tmp_path / "d", labels=labels)
    assert manifest.splits["train"].unlabeled == 2


def test_a_sample_id_out_of_sequence_is_named(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d")
    table = pq.read_table(tmp_path / "d" / manifest.splits["train"].shards[0].path)
    ids = table.column("sample_id").to_numpy().copy()
    ids[5] = 500
    manifest = rewrite_shard(tmp_path / "d", manifest, 0, table.set_column(0, table.schema.field(0), pa.array(ids)))
    with pytest.raises(shards.DatasetError, match=r"part-00000.parquet row 5: sample_id 500, expected 5"):
        checks.read_labels(str(tmp_path / "d"), manifest, "train")


def test_an_image_that_does_not_decode_names_shard_row_and_sample(tmp_path: Path) -> None:
    manifest, images, _ = write_toy(tmp_path / "d", encoding="png")
    manifest = break_image(tmp_path / "d", manifest, 2, 10)
    rows = ShardRows(str(tmp_path / "d"), manifest, "train")
    assert np.array_equal(rows.read(np.array([48, 57])), images[[48, 57]])  # other rows still read
    with pytest.raises(
        shards.DatasetError, match=r"part-00002.parquet row 10 \(sample_id 58\): the image does not decode"
    ):
        rows.read(np.array([3, 58]))


def test_changed_bytes_fail_the_digest_check(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d")
    path = tmp_path / "d" / manifest.splits["train"].shards[3].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a pixel (raw images are most of the file), same size: only the sha256 can tell
    path.write_bytes(bytes(data))
    checks.read_labels(str(tmp_path / "d"), manifest, "train")  # the cheap checks pass
    with pytest.raises(shards.DatasetError, match=r"part-00003.parquet: sha256 .* does not match"):
        checks.verify_digests(str(tmp_path / "d"), manifest)


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    images, labels = toy_images(40)

    def chunks():
        yield images[:30], labels[:30]
        raise OSError("the source broke")

    with pytest.raises(OSError, match="the source broke"):
        shards.write_dataset(str(tmp_path / "d"), ["a", "b", "c"], SHAPE, "raw", {"train": chunks()}, 8, 1)
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]


@pytest.mark.parametrize("error", [OSError("the source broke"), KeyboardInterrupt()])
def test_a_failed_write_leaves_no_folder_either(tmp_path: Path, error: BaseException) -> None:
    """An empty train/ left behind made the next import's destination look foreign (Ctrl-C too)."""
    images, labels = toy_images(40)
    (tmp_path / "existing").mkdir()

    def chunks():
        yield images[:30], labels[:30]  # three shards of 8 rows written
        raise error

    for dest in ("d", "existing"):
        with pytest.raises(type(error)):
            shards.write_dataset(str(tmp_path / dest), ["a", "b", "c"], SHAPE, "raw", {"train": chunks()}, 8, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"], "DEST it made is removed, one given is kept"
    assert not list((tmp_path / "existing").iterdir())


def test_leftovers_of_an_unfinished_import_are_recognised_and_nothing_else(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    assert shards.leftovers(str(dest)) == []
    (dest / "test").mkdir(parents=True)
    (dest / "train").mkdir()
    (dest / "train" / "part-00000.parquet").write_bytes(b"a shard cut short by SIGKILL")
    assert shards.leftovers(str(dest)) is None, "shards without the import's marker are nobody's to delete"
    shards.write_marker(str(dest))
    found = shards.leftovers(str(dest))
    assert sorted(Path(info.path).relative_to(dest).as_posix() for info in found) == [
        shards.IMPORT_MARKER,
        "test",
        "train",
        "train/part-00000.parquet",
    ]
    with pytest.raises(shards.DatasetError, match=r"an unfinished import .*re-run the import"):
        shards.read_manifest(str(dest))
    for foreign in ("notes.txt", "train/notes.txt", "photos/part-00000.parquet", "train/sub/part-00001.parquet"):
        (dest / foreign).parent.mkdir(parents=True, exist_ok=True)
        (dest / foreign).write_text("mine")
        assert shards.leftovers(str(dest)) is None, foreign
        (dest / foreign).unlink()
        if (dest / foreign).parent.name in ("photos", "sub"):
            (dest / foreign).parent.rmdir()
    shards.clear_leftovers(str(dest), found)
    assert dest.is_dir() and not list(dest.iterdir())


def test_changed_shards_names_missing_and_resized_ones_without_reading_them(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d")
    assert checks.changed_shards(str(tmp_path / "d"), manifest) == []
    first, second = (tmp_path / "d" / s.path for s in manifest.splits["train"].shards[:2])
    first.unlink()
    second.write_bytes(b"short")
    assert checks.changed_shards(str(tmp_path / "d"), manifest) == [
        "train/part-00000.parquet is missing",
        f"train/part-00001.parquet is 5 bytes, the manifest says {manifest.splits['train'].shards[1].bytes}",
    ]


def test_the_image_suffixes_are_torchvisions() -> None:
    """What tells an image folder given as a dataset URI: the files torchvision's ImageFolder reads."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert set(shards.IMAGE_SUFFIXES) == set(IMG_EXTENSIONS)


def test_a_split_s_chunks_are_closed_once_its_last_shard_is_written(tmp_path: Path) -> None:
    """The import's progress bar closes then, so its rate counts the write (it timed the read alone before)."""
    images, labels = toy_images(20)

    class Chunks:
        shards_at_close: list[str] | None = None

        def __iter__(self):
            yield images, labels  # one chunk, fewer rows than a row group: written only when the split closes

        def close(self) -> None:
            self.shards_at_close = sorted(p.name for p in tmp_path.rglob("*.parquet"))

    chunks = Chunks()
    manifest = shards.write_dataset(str(tmp_path / "d"), ("a", "b", "c"), images.shape[1:], "raw", {"train": chunks})
    assert chunks.shards_at_close == [Path(s.path).name for s in manifest.splits["train"].shards]
    assert chunks.shards_at_close  # the shard existed when the chunks were closed
