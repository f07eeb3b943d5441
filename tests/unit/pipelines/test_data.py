"""Tests for pipelines.data: loaders and the CReST long-tailed split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import data
from pipelines.data import (
    DATASET_REQUIRES_ROOT,
    DATASETS,
    LABELS_ONLY,
    labels_of,
    load_dataset,
    load_labels,
)
from pipelines.long_tail import labeled_counts, long_tailed_counts, long_tailed_split


def test_long_tailed_counts_match_cifar10_lt_gamma_100() -> None:
    assert long_tailed_counts(5000, 100, 10) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_long_tailed_counts_edge_cases() -> None:
    assert long_tailed_counts(100, 1, 4) == [100, 100, 100, 100]
    assert long_tailed_counts(300, 10, 1) == [300]
    # gamma = 4, L = 3: 100 * 4^(-1/2) = 50 exactly, tail = 25
    assert long_tailed_counts(100, 4, 3) == [100, 50, 25]
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tailed_counts(100, 0.5, 3)


def test_labeled_counts_round_up() -> None:
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert labeled_counts(counts, 0.1) == [500, 300, 180, 108, 65, 39, 24, 14, 9, 5]
    # 0.3 * 10 is 3.0000000000000004 in floats: must stay 3, not 4
    assert labeled_counts([10, 3, 1], 0.3) == [3, 1, 1]
    assert labeled_counts([7], 0.0) == [0]
    with pytest.raises(ValueError, match="labeled_fraction"):
        labeled_counts([7], 1.5)


def _balanced_labels(num_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def _split(labels: np.ndarray, seed: int = 0, **overrides) -> dict[str, np.ndarray]:
    kwargs = {
        "num_classes": 4,
        "head_count": 40,
        "imbalance_ratio": 8,
        "labeled_fraction": 0.25,
        "holdout_per_class": 5,
    }
    kwargs.update(overrides)
    return long_tailed_split(labels, rng=np.random.default_rng(seed), **kwargs)


def test_long_tailed_split_counts_and_disjointness() -> None:
    labels = _balanced_labels(4, 60)
    split = _split(labels)
    # counts for (40, gamma 8, L 4): 40, 20, 10, 5; labeled ceil(0.25 * N): 10, 5, 3, 2
    assert [int((labels[split["labeled"]] == c).sum()) for c in range(4)] == [10, 5, 3, 2]
    assert [int((labels[split["unlabeled"]] == c).sum()) for c in range(4)] == [30, 15, 7, 3]
    assert [int((labels[split["holdout"]] == c).sum()) for c in range(4)] == [5, 5, 5, 5]
    parts = [set(split[key].tolist()) for key in ("labeled", "unlabeled", "holdout")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert all(split[key].dtype == np.int64 for key in split)


def test_long_tailed_split_takes_holdout_first() -> None:
    # The tail class has exactly holdout + N_L samples: only possible if the holdout is served first
    # and the train part takes what remains, never starving the balanced holdout.
    labels = np.concatenate([np.full(45, 0), np.full(25, 1), np.full(15, 2), np.full(10, 3)])
    split = _split(labels)
    assert [int((labels[split["holdout"]] == c).sum()) for c in range(4)] == [5, 5, 5, 5]
    assert int((labels[split["unlabeled"]] == 3).sum()) + int((labels[split["labeled"]] == 3).sum()) == 5


def test_long_tailed_split_honours_class_order() -> None:
    labels = _balanced_labels(4, 60)
    split = _split(labels, class_order=[2, 0, 3, 1])
    train = np.concatenate([split["labeled"], split["unlabeled"]])
    per_class = [int((labels[train] == c).sum()) for c in range(4)]
    assert per_class == [20, 5, 40, 10]  # class 2 is the head, class 1 the tail


def test_long_tailed_split_rejects_bad_class_order() -> None:
    with pytest.raises(ValueError, match=r"data.class_order: expected each class number 0..3 once; got \[0, 0, 1, 2\]"):
        _split(_balanced_labels(4, 60), class_order=[0, 0, 1, 2])


def test_long_tailed_split_is_deterministic_per_seed() -> None:
    labels = _balanced_labels(4, 60)
    first, again, other = _split(labels, seed=3), _split(labels, seed=3), _split(labels, seed=4)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["labeled"], other["labeled"])


def test_long_tailed_split_names_the_short_class_and_the_knobs() -> None:
    labels = np.concatenate([np.full(60, 0), np.full(60, 1), np.full(60, 2), np.full(8, 3)])
    with pytest.raises(ValueError) as excinfo:
        _split(labels)
    message = str(excinfo.value)
    assert "class 3 has 8 samples" in message
    assert "5 holdout + 5 train" in message
    assert "head_count" in message and "holdout_per_class" in message


def test_digits_are_real_uint8_16x16() -> None:
    splits = load_dataset("digits", None)
    train = splits.train
    assert train.images.shape == (1797, 1, 16, 16)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_classes == 10 and set(train.labels.tolist()) == set(range(10))
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert splits.test is None


def test_synthetic_is_deterministic_and_separable() -> None:
    first, second = data.load_synthetic(None).train, data.load_synthetic(None).train
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.images.shape == (2000, 1, 16, 16) and first.images.dtype == torch.uint8
    # Nearest class mean classifies well above chance: the data is learnable.
    x = first.images.flatten(1).float()
    means = torch.stack([x[first.labels == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(x, means).argmin(1) == first.labels).float().mean().item()
    assert accuracy > 0.9


def test_requires_root_matches_registry() -> None:
    assert {"cifar10", "cifar100", "imagefolder"} == DATASET_REQUIRES_ROOT
    assert set(DATASETS) >= DATASET_REQUIRES_ROOT


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError) as excinfo:
        load_dataset("mnist", None)
    assert all(name in str(excinfo.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_root_says_where_and_what(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as excinfo:
        load_dataset(name, str(missing))
    message = str(excinfo.value)
    assert str(missing) in message and "python batches" in message


def test_cifar_empty_root_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", str(tmp_path))


def test_cifar_without_root_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="needs a root"):
        load_dataset("cifar10", None)


def _write_png(path: Path, value: int, size: tuple[int, int] = (20, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


def test_imagefolder_loads_train_and_test(tmp_path: Path) -> None:
    for i in range(3):
        _write_png(tmp_path / "train" / "cat" / f"{i}.png", 10)
        _write_png(tmp_path / "train" / "dog" / f"{i}.png", 200)
    _write_png(tmp_path / "val" / "dog" / "0.png", 200)
    splits = load_dataset("imagefolder", str(tmp_path))
    assert splits.train.images.shape == (6, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.train.num_classes == 2
    assert sorted(splits.train.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert int(splits.train.images[splits.train.labels == 1].min()) == 200
    assert splits.test is not None and splits.test.labels.tolist() == [1]  # train's mapping: dog = 1


def test_imagefolder_without_train_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train"):
        load_dataset("imagefolder", str(tmp_path))


@pytest.mark.parametrize("name", sorted(LABELS_ONLY))
def test_labels_only_agree_with_the_loader(name: str) -> None:
    """The preflight draws its split from these labels; the split stage from the loaded dataset."""
    cheap, loaded = load_labels(name, None), labels_of(load_dataset(name, None))
    assert cheap.num_classes == loaded.num_classes and cheap.test is None and loaded.test is None
    assert cheap.train.dtype == loaded.train.dtype and np.array_equal(cheap.train, loaded.train)


def test_digits_read_from_the_shipped_file_equal_scikit_learns_loader() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch, loaded = sklearn_digits(), load_dataset("digits", None, image_size=8)
    expected = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    assert np.array_equal(loaded.train.images.squeeze(1).numpy(), expected)
    assert np.array_equal(loaded.train.labels.numpy(), bunch.target)


def test_digits_labels_do_not_import_scikit_learn() -> None:
    """The preflight of every `relay run` reads them before Ray starts; importing scikit-learn cost 3 s there."""
    probe = (
        "import sys, numpy as np; from pipelines.data import load_labels; "
        "counts = np.bincount(load_labels('digits', None).train).tolist(); "
        "print(counts, 'sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[178, 182, 177, 183, 181, 182, 181, 179, 174, 180] False"


def test_a_missing_cifar_root_is_reported_before_torchvision_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing torchvision costs seconds; a wrong path must not wait for it (here, importing it would fail)."""
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(FileNotFoundError, match="expected the CIFAR python batches .* at /nonexistent/cifar; got no"):
        data.load_labels("cifar10", "/nonexistent/cifar")


def test_image_shapes_are_the_loaders_shapes() -> None:
    assert set(data.IMAGE_SHAPES) == set(DATASETS)
    for name in LABELS_ONLY:
        assert tuple(load_dataset(name, None).train.images.shape[1:]) == data.IMAGE_SHAPES[name]


def test_class_counts_are_the_loaders_counts() -> None:
    assert set(data.CLASS_COUNTS) | {"imagefolder"} == set(DATASETS)
    for name in LABELS_ONLY:
        assert load_dataset(name, None).train.num_classes == data.CLASS_COUNTS[name]


# A balanced split of classes 3 and 1 (relabelled 0 and 1) out of a 4-class dataset.
SUBSET_3_1 = {
    "fold": 0,
    "head_count": 20,
    "imbalance_ratio": 1,
    "labeled_fraction": 0.5,
    "holdout_per_class": 0,
    "classes": [3, 1],
}


def test_a_class_subset_relabels_train_and_test_and_drops_the_rest() -> None:
    from pipelines.split import OUTSIDE_TASK, select_classes, split_table

    labels = data.DatasetLabels(np.repeat(np.arange(4), 30), np.repeat(np.arange(4), 5), 4)
    task = select_classes(labels, [3, 1])
    assert task.num_classes == 2
    assert set(task.train.tolist()) == {OUTSIDE_TASK, 0, 1} and (task.train[labels.train == 3] == 0).all()
    table = split_table(SUBSET_3_1, labels)
    subsets = np.asarray(table.column("subset").to_pylist())
    ids, got = table.column("sample_id").to_numpy(), table.column("label").to_numpy()
    test = subsets == "test"
    assert test.sum() == 10 and set(labels.test[ids[test]].tolist()) == {1, 3}
    assert set(labels.train[ids[~test]].tolist()) == {1, 3} and set(got.tolist()) == {0, 1}
    with pytest.raises(ValueError, match=r"classes \[7\] are not classes of the dataset"):
        select_classes(labels, [1, 7])


def test_digits_at_their_native_8x8_are_sklearns_pixels() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    native = load_dataset("digits", None, image_size=8).train.images
    expected = np.round(np.asarray(sklearn_digits().images) * 255.0 / 16.0)
    assert native.shape == (1797, 1, 8, 8) and native.dtype == torch.uint8
    assert np.array_equal(native[:, 0].numpy(), expected.astype(np.uint8))
    assert torch.equal(
        load_dataset("digits", None, image_size=16).train.images, load_dataset("digits", None).train.images
    )
    assert load_dataset("synthetic", None, image_size=8).train.images.shape == (2000, 1, 8, 8)
    assert data.image_shape("digits", 8) == (1, 8, 8) and data.image_shape("digits") == (1, 16, 16)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", None, image_size=2)


def test_a_class_subset_keeps_unknown_labels_unknown_and_in_the_unlabeled_pool() -> None:
    """-1 (a sharded dataset's null label) must not index the class mapping (it would become the last class)."""
    from pipelines.split import OUTSIDE_TASK, select_classes, split_table

    train = np.concatenate([np.repeat(np.arange(4), 30), np.full(7, -1)])
    labels = data.DatasetLabels(train, np.repeat(np.arange(4), 5), 4)
    task = select_classes(labels, [3, 1])
    assert (task.train[train == -1] == -1).all() and (task.train[train == 0] == OUTSIDE_TASK).all()
    table = split_table(SUBSET_3_1, labels)
    unknown = set(np.flatnonzero(train == -1).tolist())
    rows = dict(zip(table.column("sample_id").to_pylist(), table.column("subset").to_pylist()))
    assert all(rows.get(i) == "unlabeled" for i in unknown)
