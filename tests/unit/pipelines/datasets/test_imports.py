"""Importing sources as shards: the stored pixels are the in-memory loaders' pixels, in their order."""

from __future__ import annotations

import json
import os
import pickle
import time
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
        ("digits", {"image_size": 64}, r"takes no --image-size"),
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


def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)


def test_nested_subfolders_belong_to_their_class(tmp_path: Path) -> None:
    """torchvision's label, not the parent folder's name: train/cat/sub/deep/n0.png is a cat (was KeyError 'deep')."""
    root = _image_folder(tmp_path / "folder")
    _png(root / "train" / "cat" / "sub" / "deep" / "n0.png")
    _png(root / "val" / "dog" / "more" / "n1.png")
    imports.import_dataset(str(root), str(tmp_path / "d"), {"image_size": 8})
    loaded = data.load_imagefolder(str(root), image_size=8)
    assert loaded.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1] and loaded.test.labels.tolist() == [0, 1, 1]
    for split, expected in (("train", loaded.train), ("test", loaded.test)):
        assert np.array_equal(_read_all(str(tmp_path / "d"), split)[1], expected.labels.numpy())


def test_hidden_entries_and_other_file_types_are_skipped_and_counted(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    _png(root / "train" / ".ipynb_checkpoints" / "x.png")  # not a class
    _png(root / "train" / "cat" / ".hidden.png")
    (root / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 macOS AppleDouble")  # failed the import
    Image.new("RGB", (4, 4)).save(root / "train" / "dog" / "anim.gif")
    summary = imports.import_dataset(str(root), str(tmp_path / "d"), {})
    manifest = shards.read_manifest(str(tmp_path / "d"))
    assert manifest.classes == ("cat", "dog") and manifest.splits["train"].count == 6
    assert summary["skipped"] == (
        "1 hidden folder(s) not taken as a class; 2 hidden file(s) (name starts with '.'); "
        "1 file(s) of a type torchvision does not read as an image (.gif)"
    )
    assert data.load_imagefolder(str(root)).train.num_classes == 2


def test_files_beside_the_class_folders_are_counted_and_a_run_warns_of_them(tmp_path: Path, caplog) -> None:
    """torchvision ignores train/loose.png (it is in no class folder); the import and the run now say so."""
    root = _image_folder(tmp_path / "folder")
    _png(root / "train" / "loose.png")
    (root / "train" / "README.txt").write_text("labels: see folders")
    summary = imports.import_dataset(str(root), str(tmp_path / "d"), {})
    assert summary["skipped"] == (
        "2 file(s) directly in train/, outside any class folder (a class is a folder of images)"
    )
    with caplog.at_level("WARNING", logger="pipelines.data"):
        data.root_digest("imagefolder", str(root))  # what `relay run` computes when it reads the config
    assert [r.getMessage() for r in caplog.records] == [
        f"imagefolder: {root / 'train'}: left out 2 file(s) directly in train/, outside any class folder "
        "(a class is a folder of images)"
    ]


def test_an_empty_class_folder_is_named_with_the_fix(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    (root / "train" / "zebra").mkdir()
    (root / "train" / "zebra" / "notes.txt").write_text("todo")
    with pytest.raises(ValueError, match=r"class folder .*train/zebra holds no image .*add images to it or remove"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})
    with pytest.raises(ValueError, match=r"class folder .*train/zebra holds no image"):
        data.load_imagefolder(str(root))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(("size", "ok"), [(3, False), (4, True), (1025, False), (1024, True), (100000, False)])
def test_image_size_has_the_bound_of_data_image_size(tmp_path: Path, size: int, ok: bool) -> None:
    """--image-size 100000 asked for a 168 GiB chunk; the bound is data.image_size's."""
    from pipelines.schema import DataSection

    bounds = {type(m).__name__: m for m in DataSection.model_fields["image_size"].metadata}
    assert bounds["Le"].le == imports.MAX_IMAGE_SIZE
    root = _image_folder(tmp_path / "folder")
    if ok:
        assert imports.import_dataset(str(root), str(tmp_path / "d"), {"image_size": size})["images"].startswith(
            f"3x{size}x{size}"
        )
        return
    with pytest.raises(ValueError, match=rf"--image-size: expected 4 to 1024, got {size}"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {"image_size": size})
    assert not (tmp_path / "d").exists()


def test_an_unfinished_import_is_cleared_and_imported_again(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    shards.write_marker(str(dest))  # what an import killed after its first shard leaves
    (dest / "train").mkdir(parents=True)
    (dest / "train" / "part-00000.parquet").write_bytes(b"cut short by SIGKILL")
    with pytest.raises(ValueError, match=r"an unfinished import .*re-run the import"):
        imports.describe(str(dest), False)
    summary = imports.import_dataset("digits", str(dest), {})
    assert summary["cleared"].endswith("(1 shard file(s) and 1 folder(s), no manifest): removed it and imported again")
    assert imports.describe(str(dest), True)["digest"] == summary["digest"]
    (tmp_path / "e" / "train").mkdir(parents=True)
    (tmp_path / "e" / "train" / "mine.txt").write_text("not an import's")
    with pytest.raises(ValueError, match=r"not empty and holds no Relay dataset"):
        imports.import_dataset("digits", str(tmp_path / "e"), {})
    assert (tmp_path / "e" / "train" / "mine.txt").exists()


def test_resolved_options_compare_and_differences_are_worded(tmp_path: Path) -> None:
    """auto chose raw for digits, so raw is the same import; png is another, said as old vs new (no dict)."""
    dest = str(tmp_path / "d")
    imports.import_dataset("digits", dest, {})
    assert (
        "nothing written" in imports.import_dataset("digits", dest, {"encoding": "raw", "rows_per_group": 4096})["note"]
    )
    with pytest.raises(ValueError) as info:
        imports.import_dataset("synthetic", dest, {"encoding": "png"})
    message = str(info.value)
    assert "source: imported from 'digits', this import reads 'synthetic'" in message
    assert "--encoding: stored raw, this import asks for png" in message and "{" not in message


def _tamper(dest: Path, how: str) -> None:
    shard = dest / "train" / "part-00000.parquet"
    if how == "deleted shard":
        shard.unlink()
    elif how == "edited shard":
        shard.write_bytes(shard.read_bytes() + b"x")
    else:
        manifest = json.loads((dest / shards.MANIFEST).read_text())
        manifest["classes"][0] = "kitten"
        (dest / shards.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("deleted shard", r"changed after its import: train/part-00000.parquet is missing"),
        ("edited shard", r"changed after its import: train/part-00000.parquet is \d+ bytes, the manifest says"),
        ("edited manifest", r"manifest does not check out \(the manifest's digest .* edited after the import\)"),
    ],
)
def test_a_tampered_destination_is_no_no_op(tmp_path: Path, how: str, message: str) -> None:
    root = _image_folder(tmp_path / "folder")
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    _tamper(tmp_path / "d", how)
    with pytest.raises(ValueError, match=message + r".*remove .*/d \(or import into a new path\) to re-import"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})


def test_a_changed_source_folder_is_no_no_op(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    assert shards.read_manifest(str(tmp_path / "d")).source["files"]["count"] == 8
    for i in range(10):
        _png(root / "train" / "cat" / f"new{i}.png", seed=i)
    with pytest.raises(ValueError, match=r"changed since it was imported .*: it holds 18 file\(s\), .*read 8"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})
    for i in range(10):
        (root / "train" / "cat" / f"new{i}.png").unlink()
    (root / "train" / "cat" / "0.png").rename(root / "train" / "cat" / "renamed.png")
    with pytest.raises(ValueError, match=r"still 8 file\(s\), \d+ bytes, but other names or sizes"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})


PAST_NS = 10**18  # 2001-09-09: one mtime for two files, as files written within one clock tick share


def _swap(first: Path, second: Path, how: str) -> None:
    """Swap two files' contents: rewritten in place (each keeps its inode; the mtime moves), or renamed over
    each other (each keeps its mtime: only the ctime, which the kernel sets, moves)."""
    if how == "edited in place":
        old = first.read_bytes()
        first.write_bytes(second.read_bytes())
        second.write_bytes(old)
        return
    first.rename(first.with_suffix(".tmp"))
    second.rename(first)
    first.with_suffix(".tmp").rename(second)


@pytest.mark.parametrize("how", ["edited in place", "swapped by rename"])
def test_images_swapped_at_the_same_size_are_no_no_op(tmp_path: Path, how: str) -> None:
    """Same names, count and bytes: the import said `nothing written` over stale shards (seen with two 123-byte
    PNGs)."""
    root = _image_folder(tmp_path / "folder")
    first, second = root / "train" / "cat" / "0.png", root / "train" / "cat" / "1.png"
    assert first.stat().st_size == second.stat().st_size and first.read_bytes() != second.read_bytes()
    for path in (first, second):
        os.utime(path, ns=(PAST_NS, PAST_NS))
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    time.sleep(0.02)  # the kernel's file clock ticks every few ms: the swap's ctime is a later one
    _swap(first, second, how)
    with pytest.raises(ValueError, match=r"changed since it was imported .*same names and sizes, but modified since"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})


def test_a_repeated_import_of_an_untouched_folder_writes_nothing(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    written = {path: path.stat().st_mtime_ns for path in (tmp_path / "d").rglob("*")}
    again = imports.import_dataset(str(root), str(tmp_path / "d"), {})
    assert again["note"] == "already imported from this source: nothing written"
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "d").rglob("*")} == written


def test_a_cifar_batch_rewritten_at_the_same_size_is_no_no_op(tmp_path: Path) -> None:
    root = _cifar10(tmp_path / "cifar")
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    os.utime(batch, ns=(PAST_NS, PAST_NS))
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    entry = pickle.loads(batch.read_bytes())
    entry["data"][:] = 99
    batch.write_bytes(pickle.dumps(entry))
    with pytest.raises(ValueError, match=r"still 7 file\(s\), \d+ bytes of the same names and sizes, but modified"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})


@pytest.mark.parametrize("recorded", ["no fingerprint", "no times"])
def test_a_manifest_from_an_older_relay_still_compares_by_source_and_says_what_it_could_not(
    tmp_path: Path, recorded: str
) -> None:
    """Readable, a no-op as before, and the note says an edit since would not show and how to be sure."""
    root = _image_folder(tmp_path / "folder")
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    manifest = shards.read_manifest(str(tmp_path / "d"))
    source = {key: value for key, value in manifest.source.items() if key != "files"}
    if recorded == "no times":
        source["files"] = {key: value for key, value in manifest.source["files"].items() if key != "times"}
    older = {**manifest.__dict__, "source": source, "source_times": ""}  # an older Relay's: no times outside source
    shards.write_manifest(str(tmp_path / "d"), shards.DatasetManifest(**older))
    if recorded == "no fingerprint":
        _png(root / "train" / "cat" / "new.png")
    else:
        _swap(root / "train" / "cat" / "0.png", root / "train" / "cat" / "1.png", "edited in place")
    note = imports.import_dataset(str(root), str(tmp_path / "d"), {})["note"]
    assert note.startswith("already imported from this source: nothing written (its manifest, from an older Relay")
    assert "would not show; to be sure, remove the destination and import again" in note


@pytest.mark.parametrize("dest", ["folder/train/zz_shards", "folder/notes", "folder", "."])
def test_a_destination_inside_the_source_or_around_it_is_refused(tmp_path: Path, dest: str) -> None:
    """A DEST under train/ became a class folder with no image: the next import or run of the source failed."""
    root = _image_folder(tmp_path / "folder")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=r"import into a DEST outside SOURCE, e\.g\. .*/folder-shards$") as info:
        imports.import_dataset(str(root), str(tmp_path / dest), {})
    assert str(root.resolve()) in str(info.value)
    assert sorted(tmp_path.rglob("*")) == before
    imports.import_dataset(str(root), str(tmp_path / "folder-shards"), {})


def test_another_image_size_is_one_difference_not_three(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    with pytest.raises(ValueError) as info:
        imports.import_dataset(str(root), str(tmp_path / "d"), {"image_size": 128})
    assert str(info.value).split("): ")[1].startswith("--image-size: imported at 32x32, this import asks for 128x128;")
    assert "--encoding" not in str(info.value) and "--rows-per-group" not in str(info.value)
