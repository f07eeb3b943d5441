"""Shards a user wrote with pyarrow, and shards that changed: what the checks take, and what they refuse, in one line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.datasets import checks, codec, shards
from pipelines.datasets.rows import ShardRows
from tests.unit.pipelines.datasets.toy import CLASSES, SHAPE, toy_images, write_toy

PIXELS = int(np.prod(SHAPE))


def user_table(n: int, labels: pa.Array | None = None, images: pa.Array | None = None) -> pa.Table:
    """The documented columns as pyarrow writes them by default: every field nullable, the list item `item`."""
    pixels, drawn = toy_images(n)
    image = pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1), pa.uint8()), PIXELS)
    return pa.table(
        {
            "sample_id": pa.array(np.arange(n), pa.int64()),
            "label": pa.array(drawn, pa.int32()) if labels is None else labels,
            "image": image if images is None else images,
        }
    )


def write_user_dataset(root: Path, table: pa.Table, unlabeled: int = 0, **options: object) -> shards.DatasetManifest:
    """One train shard written by pq.write_table (pyarrow's defaults) and a manifest sealed around it."""
    (root / "train").mkdir(parents=True)
    pq.write_table(table, root / "train" / "part-00000.parquet", **options)
    data = (root / "train" / "part-00000.parquet").read_bytes()
    shard = shards.Shard("train/part-00000.parquet", table.num_rows, len(data), hashlib.sha256(data).hexdigest())
    split = shards.SplitShards(table.num_rows, unlabeled, (shard,))
    return shards.write_manifest(str(root), shards.DatasetManifest(CLASSES, SHAPE, "raw", 16, {"train": split}))


def test_shards_written_with_pyarrow_s_defaults_are_read(tmp_path: Path) -> None:
    """The documented schema written with pyarrow's defaults was refused as 'wrong schema': only nullability and
    the list item's name differed."""
    table = user_table(40)
    assert table.schema.field("sample_id").nullable and table.schema.field("image").type.value_field.nullable
    manifest = write_user_dataset(tmp_path / "d", table)
    labels = checks.read_labels(str(tmp_path / "d"), manifest, "train")
    assert np.array_equal(labels, table.column("label").to_numpy())
    images = ShardRows(str(tmp_path / "d"), manifest, "train").read(np.array([39, 0, 7]))
    assert np.array_equal(images, toy_images(40)[0][[39, 0, 7]])


def test_a_shard_of_other_types_is_still_refused(tmp_path: Path) -> None:
    table = user_table(20)
    table = table.set_column(1, "label", table.column("label").cast(pa.int64()))
    manifest = write_user_dataset(tmp_path / "d", table)
    with pytest.raises(shards.DatasetError, match=r"wrong schema: expected .*label int32.*got .*label int64"):
        checks.read_labels(str(tmp_path / "d"), manifest, "train")


def test_a_negative_label_is_refused_not_taken_as_unknown(tmp_path: Path) -> None:
    """Label -1 read as 'no label': `relay data info --verify` passed and the row joined the unlabeled pool."""
    labels = np.arange(30) % 3
    labels[7] = -1
    manifest = write_user_dataset(tmp_path / "d", user_table(30, labels=pa.array(labels, pa.int32())))
    with pytest.raises(shards.DatasetError) as info:
        checks.read_labels(str(tmp_path / "d"), manifest, "train")
    message = str(info.value)
    assert "train/part-00000.parquet row 7: label -1 is outside 0..2" in message
    assert "an unknown label is null" in message


def test_null_labels_are_unknown_and_must_match_the_manifest_s_count(tmp_path: Path) -> None:
    labels = pa.array([None if i % 10 == 0 else i % 3 for i in range(30)], pa.int32())
    manifest = write_user_dataset(tmp_path / "d", user_table(30, labels=labels), unlabeled=3)
    assert int((checks.read_labels(str(tmp_path / "d"), manifest, "train") == -1).sum()) == 3
    wrong = write_user_dataset(tmp_path / "e", user_table(30, labels=labels), unlabeled=0)
    with pytest.raises(shards.DatasetError, match=r"split train lists 0 rows without a label, but its shards hold 3"):
        checks.read_labels(str(tmp_path / "e"), wrong, "train")


def test_a_null_sample_id_is_refused_naming_its_row(tmp_path: Path) -> None:
    table = user_table(20)
    table = table.set_column(0, "sample_id", pa.array([None if i == 4 else i for i in range(20)], pa.int64()))
    manifest = write_user_dataset(tmp_path / "d", table)
    with pytest.raises(shards.DatasetError, match=r"part-00000.parquet row 4: sample_id is null, expected 4"):
        checks.read_labels(str(tmp_path / "d"), manifest, "train")


def test_a_null_pixel_is_refused_from_the_footer_or_when_decoded(tmp_path: Path) -> None:
    pixels = toy_images(20)[0].reshape(-1).tolist()
    pixels[5 * PIXELS + 3] = None
    images = pa.FixedSizeListArray.from_arrays(pa.array(pixels, pa.uint8()), PIXELS)
    manifest = write_user_dataset(tmp_path / "d", user_table(20, images=images))
    with pytest.raises(shards.DatasetError, match=r"row group 0 \(rows 0..19\) holds 1 null image value"):
        checks.read_labels(str(tmp_path / "d"), manifest, "train")
    bare = write_user_dataset(tmp_path / "e", user_table(20, images=images), write_statistics=False)
    rows = ShardRows(str(tmp_path / "e"), bare, "train")
    with pytest.raises(shards.DatasetError, match=r"part-00000.parquet row 5 \(sample_id 5\): the image holds a null"):
        rows.read(np.arange(20))


def test_a_shard_whose_bytes_changed_and_no_longer_parse_leads_with_its_sha256(tmp_path: Path) -> None:
    """Flipped bytes in a page header said 'could not read the shard (Couldn't deserialize thrift: ...' over
    three lines, not that the shard changed."""
    manifest, _, _ = write_toy(tmp_path / "d")
    path = tmp_path / "d" / manifest.splits["train"].shards[0].path
    data = bytearray(path.read_bytes())
    data[4:12] = bytes(b ^ 0xFF for b in data[4:12])  # the first page header, just after the magic
    path.write_bytes(bytes(data))
    with pytest.raises(shards.DatasetError) as info:
        checks.read_labels(str(tmp_path / "d"), manifest, "train")
    message = str(info.value)
    assert message.startswith("train/part-00000.parquet: sha256 ") and "the shard changed after the import" in message
    assert "\n" not in message


def test_an_undecodable_png_is_said_without_an_object_repr() -> None:
    column = pa.array([b"notapng"], pa.binary())
    with pytest.raises(codec.ImageDecodeError) as info:
        codec.decode(column, "png", (1, 8, 8))
    assert "object at 0x" not in info.value.reason and "does not decode as PNG" in info.value.reason


def test_one_line_joins_lines_and_drops_object_reprs() -> None:
    error = OSError("Couldn't deserialize thrift: don't know what type: \x0f\nDeserializing page header failed.\n")
    assert (
        shards.one_line(error) == "Couldn't deserialize thrift: don't know what type: Deserializing page header failed."
    )
    assert shards.one_line(OSError("cannot identify image file <_io.BytesIO object at 0x7f19c25eb150>")) == (
        "cannot identify image file"
    )


def test_a_missing_shard_says_how_to_re_import(tmp_path: Path) -> None:
    """'re-import the dataset' alone: re-running the import into the same folder is refused."""
    manifest, _, _ = write_toy(tmp_path / "d")
    (tmp_path / "d" / manifest.splits["train"].shards[1].path).unlink()
    with pytest.raises(shards.DatasetError) as info:
        checks.read_labels(str(tmp_path / "d"), manifest, "train")
    assert "the shard is missing" in str(info.value)
    assert "re-import the dataset (into a new path, or remove this one first" in str(info.value)
