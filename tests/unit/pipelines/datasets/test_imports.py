"""Importing sources as shards: the stored pixels are the in-memory loaders' pixels, in their order."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import data
from pipelines.datasets import checks, imports, shards
from pipelines.datasets.rows import ShardRows


def _read_all(uri: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    manifest = shards.read_manifest(uri)
    count = manifest.splits[split].count
    return ShardRows(uri, manifest, split).read(np.arange(count)), checks.read_labels(uri, manifest, split)


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_digits_import_holds_the_in_memory_pixels(tmp_path: Path, encoding: str) -> None:
    summary = imports.import_dataset("digits", str(tmp_path / "d"), {"encoding": encoding})
    images, labels = _read_all(str(tmp_path / "d"))
    loaded = data.load_digits().train
    assert np.array_equal(images, loaded.images.numpy()) and np.array_equal(labels, loaded.labels.numpy())
    assert summary["digest"] == shards.read_manifest(str(tmp_path / "d")).digest
    assert f"stored {encoding}" in summary["images"]


def _image_folder(root: Path, broken: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("val", 1)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    if broken:
        (root / "train" / "dog" / "9.png").write_bytes(b"this is no image")
    return root


def test_an_image_folder_imports_as_the_in_memory_loader_reads_it(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    imports.import_dataset(str(root), str(tmp_path / "d"), {"image_size": 8})
    loaded = data.load_imagefolder(str(root), image_size=8)
    for split, expected in (("train", loaded.train), ("test", loaded.test)):
        images, labels = _read_all(str(tmp_path / "d"), split)
        assert np.array_equal(images, expected.images.numpy()) and np.array_equal(labels, expected.labels.numpy())
    assert shards.read_manifest(str(tmp_path / "d")).classes == ("cat", "dog")


def test_an_image_that_does_not_decode_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder", broken=True)
    with pytest.raises(ValueError, match=r"train/dog/9.png does not decode as an image"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]


def _cifar10(root: Path) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        pixels = np.full((2, 3072), i, dtype=np.uint8)
        pixels[:, 1024:] = 200  # green and blue planes: CHW order as stored
        (base / name).write_bytes(pickle.dumps({"data": pixels, "labels": [i % 10, (i + 1) % 10]}))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{k}" for k in range(10)]}))
    return root


def test_a_cifar_root_streams_batch_by_batch_in_torchvision_order(tmp_path: Path) -> None:
    imports.import_dataset(str(_cifar10(tmp_path / "cifar")), str(tmp_path / "d"), {})
    images, labels = _read_all(str(tmp_path / "d"))
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert images[:, 0].reshape(10, -1)[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert (images[:, 1:] == 200).all()
    test_images, test_labels = _read_all(str(tmp_path / "d"), "test")
    assert test_labels.tolist() == [5, 6] and (test_images[:, 0] == 5).all()


def test_a_repeated_import_writes_nothing_and_another_source_is_refused(tmp_path: Path) -> None:
    dest = str(tmp_path / "d")
    first = imports.import_dataset("digits", dest, {})
    manifest = (tmp_path / "d" / shards.MANIFEST).read_bytes()
    again = imports.import_dataset("digits", dest, {})
    assert again["digest"] == first["digest"] and "nothing written" in again["note"]
    with pytest.raises(ValueError, match=r"already holds a different dataset"):
        imports.import_dataset("synthetic", dest, {})
    with pytest.raises(ValueError, match=r"already holds a different dataset"):
        imports.import_dataset("digits", dest, {"encoding": "png"})
    assert (tmp_path / "d" / shards.MANIFEST).read_bytes() == manifest


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("nope", {}, r"neither a source name nor a folder .*valid: digits"),
        ("cifar10", {}, r"reads a folder: pass a folder holding cifar-10-batches-py"),
        ("digits", {"image_size": 64}, r"takes no image_size"),
        ("digits", {"rows_per_group": 0}, r"rows-per-group: expected at least 1"),
    ],
)
def test_bad_sources_and_options_are_refused_before_writing(tmp_path: Path, source, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        imports.import_dataset(source, str(tmp_path / "d"), options)
    assert not (tmp_path / "d").exists()


def test_a_folder_of_other_files_is_not_a_destination(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not empty and holds no Relay dataset"):
        imports.import_dataset("digits", str(tmp_path / "d"), {})
