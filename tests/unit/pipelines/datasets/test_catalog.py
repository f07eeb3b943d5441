"""A sharded dataset as a Relay dataset: the split from its label column, rows without a label in the unlabeled pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from pipelines.datasets import catalog, shards
from pipelines.split import preflight_split, split_table
from pipelines.stages.common import known_accuracy
from tests.unit.pipelines.datasets.toy import CLASSES, SHAPE, toy_images, write_toy

DATA = {"name": "parquet", "head_count": 20, "imbalance_ratio": 2.0, "labeled_fraction": 0.5, "holdout_per_class": 3}
DATA = {**DATA, "fold": 0, "class_order": None, "digest": None}


def test_rows_without_a_label_join_the_unlabeled_pool(tmp_path: Path) -> None:
    labels = np.tile([0, 1, 2, -1], 50)  # 50 rows of each class, 50 unknown
    write_toy(tmp_path / "d", n=200, labels=labels)
    data = {**DATA, "uri": str(tmp_path / "d")}
    table = split_table(data, catalog.dataset_labels(data))
    unlabeled = table.filter(pc.equal(table.column("subset"), "unlabeled"))
    unknown = np.flatnonzero(labels < 0)
    assert set(unknown) <= set(unlabeled.column("sample_id").to_pylist())
    assert set(unlabeled.filter(pc.equal(unlabeled.column("label"), -1)).column("sample_id").to_pylist()) == set(
        unknown
    )
    labeled = table.filter(pc.equal(table.column("subset"), "labeled"))
    assert min(labeled.column("label").to_pylist()) >= 0
    assert preflight_split(data) == []


def test_known_accuracy_leaves_out_unknown_labels() -> None:
    assert known_accuracy(np.array([0, 1, 2, 2]), np.array([0, -1, 2, 1])) == (2, 3)


def test_a_test_split_without_labels_is_refused_and_a_pin_must_match(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d", n=60, test=10)
    assert catalog.sharded_labels(str(tmp_path / "d"), manifest.digest).test.shape == (10,)
    other = ("0" if manifest.digest[0] != "0" else "1") * 16
    with pytest.raises(shards.DatasetError, match=rf"data.digest pins {other}"):
        catalog.sharded_labels(str(tmp_path / "d"), other)
    images, _ = toy_images(10)
    splits = {"train": [toy_images(60)], "test": [(images, np.full(10, -1))]}
    shards.write_dataset(str(tmp_path / "e"), CLASSES, SHAPE, "raw", splits)
    with pytest.raises(shards.DatasetError, match=r"the test split holds 10 rows without a label"):
        catalog.sharded_labels(str(tmp_path / "e"))
    assert preflight_split({**DATA, "uri": str(tmp_path / "e")})[0].startswith("data.uri:")


def test_a_pin_of_at_least_16_hex_characters_is_a_prefix_and_a_mismatch_shows_whole_digests(tmp_path: Path) -> None:
    """Pinning the 16 characters an import prints failed with two identical 16-character prefixes."""
    manifest, _, _ = write_toy(tmp_path / "d", n=60, test=10)
    uri = str(tmp_path / "d")
    for pin in (manifest.digest[:16], manifest.digest[:40].upper(), manifest.digest):
        catalog.check_pin(manifest, uri, pin)
    other = manifest.digest[:16] + ("0" if manifest.digest[16] != "0" else "1")
    with pytest.raises(shards.DatasetError, match=rf"holds dataset {manifest.digest}, but data.digest pins {other};"):
        catalog.check_pin(manifest, uri, other)


@pytest.mark.parametrize(
    ("pin", "problem"),
    [("abc", "'abc' is too short (3 characters"), ("0123456789abcdefg", "is not hexadecimal"), ("a" * 65, "longer")],
)
def test_a_pin_no_dataset_can_match_blames_data_digest_not_the_data(tmp_path: Path, pin: str, problem: str) -> None:
    """`data.digest=abc` was told 'DS holds dataset ..., but data.digest pins abc; point data.uri at the pinned
    dataset': the data blamed for a setting too short to pin anything."""
    manifest, _, _ = write_toy(tmp_path / "d", n=60, test=10)
    prefix = manifest.digest[: len(pin)] if len(pin) < 16 else pin  # a prefix of the dataset's: too short all the same
    for given in (pin, prefix):
        with pytest.raises(catalog.PinError) as info:
            catalog.check_pin(manifest, str(tmp_path / "d"), given)
        message = str(info.value)
        assert message.startswith("data.digest: ") and "first 16+ hex characters" in message
        assert f"the dataset at {tmp_path / 'd'} is {manifest.digest}" in message and "point data.uri" not in message
        assert info.value.key == "data.digest"
        assert problem in message or given == prefix
