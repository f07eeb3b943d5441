"""Datasets read from `data.root` (image folders, CIFAR): pinned by content, checked by one rule, labelled cheaply."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from orchestrator.cli import main
from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.config import ConfigError
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.yaml_input import layered
from pipelines import data
from pipelines.data import labels_of, load_dataset, load_labels
from pipelines.datasets import imports
from pipelines.datasets.shards import read_manifest
from pipelines.long_tail import long_tailed_split
from pipelines.split import preflight_split

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")
# smoke.yaml's split, shrunk to fit a folder of 2 classes x 12 images
SMALL_SPLIT = ["data.head_count=8", "data.imbalance_ratio=2", "data.holdout_per_class=2", "data.labeled_fraction=0.5"]


def _write_png(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def _image_folder(root: Path, per_class: int = 12) -> Path:
    for label, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            _write_png(root / "train" / name / f"{i}.png", 20 * label + i)
    return root


def _cifar10(root: Path, nested: bool = True, rows: int = 2) -> Path:
    """A CIFAR-10 folder in the python-batch format whose files fail torchvision's md5 check (tiny batches).

    2 rows a batch are labelled i, i + 1 (batch i); more rows cycle through the 10 classes.
    """
    base = root / "cifar-10-batches-py" if nested else root
    base.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        pixels = np.full((rows, 3072), i, dtype=np.uint8)
        pixels[:, 1024:] = 200
        labels = [i % 10, (i + 1) % 10] if rows == 2 else [k % 10 for k in range(rows)]
        (base / name).write_bytes(pickle.dumps({"data": pixels, "labels": labels}))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{k}" for k in range(10)]}))
    return root


def _pinned(root: Path, name: str = "imagefolder", extra: list[str] | None = None) -> str:
    overrides = layered([f"data.name={name}", f"data.root={root}", *SMALL_SPLIT], extra or [])
    _, config, pinned = load_pipeline_file(SMOKE, overrides, local=False)
    assert pinned["data"]["root_digest"] == config.data.root_digest
    return config.data.root_digest


def _split_stage(root: Path) -> tuple[object, str]:
    """(the split stage's `data` params, its fingerprint: the stage cache's key) of the smoke config on ``root``."""
    spec, config, _ = load_pipeline_file(
        SMOKE, ["data.name=imagefolder", f"data.root={root}", *SMALL_SPLIT], local=False
    )
    split = next(stage for stage in spec.build(config).stages if stage.name == "data/split")
    return split.params["data"], fingerprint(split, {}, "code")


# --- 1. the stage cache notices a changed folder ---------------------------------------------------


def test_an_image_folder_is_pinned_by_its_listing(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    first = _pinned(root)
    assert first and first == _pinned(root), "an unchanged folder keeps its pin (the cache still hits)"
    image = root / "train" / "cat" / "3.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = _pinned(root)
    assert touched != first, "a newer mtime is another folder"
    _write_png(image, 99, size=9)
    assert _pinned(root) not in (first, touched), "a rewritten image is another folder"
    (root / "train" / "dog" / "0.png").unlink()
    assert _pinned(root) not in (first, touched)


def test_the_split_stage_params_differ_when_the_folder_changed(tmp_path: Path) -> None:
    """The split stage's fingerprint holds its params: the old pin only held the path string."""
    root = _image_folder(tmp_path / "folder")
    before, key = _split_stage(root)
    assert _split_stage(root)[1] == key, "an unchanged folder is a cache hit"
    for i in range(2):
        (root / "train" / "dog" / f"{i}.png").unlink()
    after, changed = _split_stage(root)
    assert before.root == after.root and before.root_digest != after.root_digest and changed != key


@pytest.mark.parametrize("name", ["imagefolder", "cifar10", "parquet"])
def test_a_submit_leaves_data_this_machine_lacks_to_the_job(tmp_path: Path, name: str) -> None:
    """`relay submit` (local=False) of data on the cluster's disks: before, refused for a folder the laptop lacks."""
    where = "data.uri" if name == "parquet" else "data.root"
    overrides = [f"data.name={name}", f"{where}={tmp_path / 'mnt' / 'relay'}", *SMALL_SPLIT]
    _, config, pinned = load_pipeline_file(SMOKE, overrides, local=False)
    assert config.data.root_digest is None and config.data.digest is None  # the job pins it, on the cluster
    assert pinned["data"].get("root_digest") is None
    with pytest.raises(ConfigError, match="no such path|no shards here"):  # `relay run` here still refuses it
        load_pipeline_file(SMOKE, overrides, local=True)


def test_a_cifar_folder_is_pinned_by_its_batch_files(tmp_path: Path) -> None:
    root = _cifar10(tmp_path / "cifar", rows=20)
    extra = ["data.head_count=8", "data.imbalance_ratio=2", "data.holdout_per_class=0", "data.labeled_fraction=0.5"]
    first = _pinned(root, "cifar10", extra)
    assert first == _pinned(root, "cifar10", extra)
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    stat = batch.stat()
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert _pinned(root, "cifar10", extra) != first


def test_a_stale_root_digest_is_replaced_and_one_on_another_dataset_is_refused(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    assert _pinned(root, extra=["data.root_digest=stale"]) == _pinned(root)
    with pytest.raises(ConfigError, match=r"data.root_digest is written by Relay .* remove data.root_digest"):
        load_pipeline_file(SMOKE, ["data.root_digest=abc"], local=False)


def test_a_worker_reads_the_folder_again_when_its_digest_changed(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    old = data.cached_dataset("imagefolder", str(root), None, data.root_digest("imagefolder", str(root)))
    _write_png(root / "train" / "cat" / "0.png", 250, size=9)
    new = data.cached_dataset("imagefolder", str(root), None, data.root_digest("imagefolder", str(root)))
    assert int(old.train.images[0].max()) == 0 and int(new.train.images[0].min()) == 250


# --- 2. the head_count the error suggests fits ------------------------------------------------------


def _suggested(labels: np.ndarray, **kwargs) -> int:
    with pytest.raises(ValueError) as excinfo:
        long_tailed_split(labels, rng=np.random.default_rng(0), **kwargs)
    found = re.search(r"head_count to at most (\d+)", str(excinfo.value))
    assert found, str(excinfo.value)
    return int(found.group(1))


@pytest.mark.parametrize(
    ("sizes", "imbalance_ratio", "holdout"),
    [
        ([60, 58, 57, 59], 1.0, 5),  # nearly balanced: the smallest class decides, not the largest
        ([200, 60, 60, 8], 8.0, 5),  # long tail: the tail class decides
        ([300, 300, 300, 300], 10.0, 40),  # balanced under a long tail: the head decides
    ],
)
def test_the_suggested_head_count_fits_and_one_more_does_not(
    sizes: list[int], imbalance_ratio: float, holdout: int
) -> None:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    kwargs = {"num_classes": len(sizes), "imbalance_ratio": imbalance_ratio, "labeled_fraction": 0.5}
    best = _suggested(labels, head_count=100000, holdout_per_class=holdout, **kwargs)
    split = long_tailed_split(
        labels, rng=np.random.default_rng(0), head_count=best, holdout_per_class=holdout, **kwargs
    )
    assert len(split["labeled"]) + len(split["unlabeled"]) > 0
    with pytest.raises(ValueError, match="does not fit"):
        long_tailed_split(
            labels, rng=np.random.default_rng(0), head_count=best + 1, holdout_per_class=holdout, **kwargs
        )


def test_a_holdout_no_class_survives_says_to_lower_it() -> None:
    labels = np.repeat(np.arange(3), [60, 60, 4])
    with pytest.raises(ValueError, match=r"No head_count fits every class: lower holdout_per_class"):
        long_tailed_split(
            labels,
            3,
            head_count=50,
            imbalance_ratio=2,
            labeled_fraction=0.5,
            rng=np.random.default_rng(0),
            holdout_per_class=5,
        )


# --- 3. CIFAR: one rule for the loader and the import ----------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_a_cifar_folder_that_fails_torchvisions_md5_loads_as_the_import_reads_it(tmp_path: Path, nested: bool) -> None:
    root = _cifar10(tmp_path / "cifar", nested)
    splits = load_dataset("cifar10", str(root))
    assert splits.train.images.shape == (10, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.train.labels.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5] and splits.train.num_classes == 10
    assert splits.train.images[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert (splits.train.images[:, 1:] == 200).all() and splits.test.labels.tolist() == [5, 6]
    imports.import_dataset(str(root), str(tmp_path / "d"), {})
    assert read_manifest(str(tmp_path / "d")).num_classes == 10


def test_a_cifar100_folder_loads_without_torchvision(tmp_path: Path) -> None:
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for name, count in (("train", 3), ("test", 2)):
        entry = {"data": np.zeros((count, 3072), dtype=np.uint8), "fine_labels": list(range(count))}
        (base / name).write_bytes(pickle.dumps(entry))
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{k}" for k in range(100)]}))
    splits = load_dataset("cifar100", str(tmp_path))
    assert splits.train.num_classes == 100 and splits.train.labels.tolist() == [0, 1, 2]
    assert splits.test is not None and splits.test.labels.tolist() == [0, 1]


def test_a_missing_cifar_batch_is_named_without_download_advice(tmp_path: Path) -> None:
    root = _cifar10(tmp_path / "cifar")
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as excinfo:
        load_dataset("cifar10", str(root))
    message = str(excinfo.value)
    assert "lacks data_batch_3" in message and "download" not in message.replace("never downloads", "")
    problems = preflight_split({"name": "cifar10", "root": str(root)})
    assert len(problems) == 1 and problems[0].startswith("data.root:") and "data_batch_3" in problems[0]


def test_an_unreadable_cifar_batch_is_named_by_both_paths(tmp_path: Path) -> None:
    root = _cifar10(tmp_path / "cifar")
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"could not read .*test_batch") as excinfo:
        load_dataset("cifar10", str(root))
    assert "download" not in str(excinfo.value)
    with pytest.raises(ValueError, match=r"could not read .*test_batch"):
        imports.import_dataset(str(root), str(tmp_path / "d"), {})


def test_a_cifar_batch_without_labels_is_named(tmp_path: Path) -> None:
    root = _cifar10(tmp_path / "cifar")
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": np.zeros((1, 3072))}))
    with pytest.raises(ValueError, match=r"data_batch_1 is not a CIFAR batch"):
        load_dataset("cifar10", str(root))


# --- 4. an image folder's labels come from its listing ----------------------------------------------


def test_image_folder_labels_decode_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _image_folder(tmp_path / "folder", per_class=3)
    _write_png(root / "test" / "dog" / "0.png", 1)
    loaded = labels_of(load_dataset("imagefolder", str(root)))

    def no_decoding(path: str, image_size: int) -> torch.Tensor:
        raise AssertionError(f"decoded {path} to read labels")

    monkeypatch.setattr(data, "imagefolder_image", no_decoding)
    data.cached_dataset.cache_clear()
    cheap = load_labels("imagefolder", str(root))
    assert cheap.num_classes == loaded.num_classes == 2
    assert np.array_equal(cheap.train, loaded.train) and cheap.train.dtype == np.int64
    assert cheap.test is not None and np.array_equal(cheap.test, loaded.test)


def test_image_folder_labels_keep_the_loaders_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train"):
        load_labels("imagefolder", str(tmp_path))


# --- through the CLI: exit 2, one message, nothing written; the suggestion passes -----------------


def _cli(tmp_path: Path, command: str, *overrides: str) -> int:
    return main([command, SMOKE, f"run.workspace={tmp_path / 'ws'}", *overrides])


def test_a_cifar_folder_missing_a_batch_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _cifar10(tmp_path / "cifar", rows=20)
    (root / "cifar-10-batches-py" / "data_batch_4").unlink()
    assert _cli(tmp_path, "run", "data.name=cifar10", f"data.root={root}") == 2
    message = capsys.readouterr().err
    assert "data.root" in message and "data_batch_4" in message and "download=True" not in message
    assert not (tmp_path / "ws").exists(), "bad input must not create the workspace"


def test_the_head_count_the_cli_suggests_validates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _image_folder(tmp_path / "folder")
    (root / "train" / "dog" / "0.png").unlink()  # 12 cats, 11 dogs: the smaller class decides
    folder = ["data.name=imagefolder", f"data.root={root}", "data.holdout_per_class=2", "data.imbalance_ratio=1"]
    assert _cli(tmp_path, "run", *folder, "data.head_count=100000") == 2
    message = capsys.readouterr().err
    assert not (tmp_path / "ws").exists()
    best = int(re.search(r"head_count to at most (\d+)", message).group(1))
    assert best == 9
    assert _cli(tmp_path, "validate", *folder, f"data.head_count={best}") == 0
