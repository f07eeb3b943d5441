"""The in-memory datasets (digits, synthetic, CIFAR-10/100, ImageFolder): their loaders, labels and root digests.

Every loader returns images as uint8 ``[N, C, H, W]`` and labels as int64 ``[N]``: uint8 keeps a
whole dataset small enough to ship between Ray workers, and augmentation works on uint8 anyway.
Loaders never download: a missing local dataset is an error that says where to put the files.
torch is imported inside the loaders, not here: the driver checks a config's split (names,
labels, ``load_labels``) without paying for torch.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.image_folder import ImageFolderListing, check_image_header, imagefolder_image, imagefolder_samples

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

SYNTHETIC_SEED = 20240917
SYNTHETIC_CLASSES = 10
SYNTHETIC_PER_CLASS = 200
IMAGE_SIZE_SMALL = 16
IMAGEFOLDER_SIZE = 32
DIGITS_SIDE = 8
DIGITS_CSV = ("datasets", "data", "digits.csv.gz")  # inside the scikit-learn package


@dataclass(frozen=True)
class ImageDataset:
    """Images uint8 [N, C, H, W] with int64 labels [N]; ``class_names[c]`` names label c (empty: the labels are the
    names, as for digits). An image folder's class folders and CIFAR's meta file name theirs, and the
    evaluation shows them: plots and MLflow said only 0..k-1 of a folder named cat, dog, ..."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSplits:
    """A train set and an optional test set; ``test is None`` means: hold a test set out of train."""

    train: ImageDataset
    test: ImageDataset | None


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def load_digits(root: str | None = None, image_size: int = IMAGE_SIZE_SMALL) -> DatasetSplits:
    """Real handwritten digits bundled with scikit-learn (1797 images, 10 classes), no download.

    The 8x8 originals (values 0..16) are scaled to 0..255 and, by default, upsampled bilinearly to
    16x16 so that crops and RandAugment's geometric ops have pixels to act on; ``image_size=8``
    (`data.image_size: 8`) keeps the native pixels, at a quarter of the compute per image.
    """
    import torch

    table = _digits_table()
    pixels = table[:, :-1].reshape(-1, 1, DIGITS_SIDE, DIGITS_SIDE).astype(np.float32)
    raw = torch.from_numpy(pixels) * (255.0 / 16.0)
    images = raw.round().clamp(0, 255).to(torch.uint8) if image_size == DIGITS_SIDE else _resize_uint8(raw, image_size)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return DatasetSplits(train=ImageDataset(images, labels, 10), test=None)


def load_synthetic(root: str | None = None) -> DatasetSplits:
    """10 classes x 200 images of 1x16x16: a fixed random template per class plus noise.

    Deterministic (fixed seed), needs nothing on disk and is learnable to high accuracy by a
    small CNN in a few hundred steps: the smoke-test dataset for pipelines and CI.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(SYNTHETIC_SEED)
    coarse = torch.rand(SYNTHETIC_CLASSES, 1, 4, 4, generator=gen)
    templates = F.interpolate(coarse, size=(IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL), mode="bilinear", align_corners=False)
    labels = torch.arange(SYNTHETIC_CLASSES).repeat_interleave(SYNTHETIC_PER_CLASS)
    noise = torch.randn(len(labels), 1, IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL, generator=gen) * 25.0
    brightness = torch.empty(len(labels), 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    pixels = 30.0 + 200.0 * templates[labels] * brightness + noise
    images = pixels.round().clamp(0, 255).to(torch.uint8)
    return DatasetSplits(train=ImageDataset(images, labels.to(torch.int64), SYNTHETIC_CLASSES), test=None)


def load_cifar10(root: str | None) -> DatasetSplits:
    """CIFAR-10 from the python batches under ``root`` (download=False always)."""
    return _load_cifar("cifar10", root)


def load_cifar100(root: str | None) -> DatasetSplits:
    """CIFAR-100 from the python batches under ``root`` (download=False always)."""
    return _load_cifar("cifar100", root)


def load_imagefolder(root: str | None, image_size: int = IMAGEFOLDER_SIZE) -> DatasetSplits:
    """``root/train/<class>/*.png`` (+ ``root/test`` or ``root/val``) as RGB uint8 of a fixed size.

    Every image is resized to ``image_size`` square so a whole split is one tensor; the test split
    uses train's class-to-index mapping so labels agree. No test folder -> ``test=None``.
    """
    listings = imagefolder_listings(imagefolder_base(root))
    train = _read_imagefolder(listings["train"], image_size)
    test = _read_imagefolder(listings["test"], image_size) if "test" in listings else None
    return DatasetSplits(train=train, test=test)


def imagefolder_base(root: str | None) -> Path:
    """The folder `data.root` names for an image folder, checked to hold ``train/``: an error says what to place where."""
    base = _require_root("imagefolder", root, "a folder with train/<class>/<image> (and optionally test/ or val/)")
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(
            f"imagefolder: expected {train_dir} with one sub-folder per class; got no such folder. "
            f"Place the images as {train_dir}/<class>/<image>."
        )
    return base


def imagefolder_listings(base: Path) -> dict[str, ImageFolderListing]:
    """The images of ``base/train`` and of ``base/test`` (or ``val``) when there is one, labelled by train's classes.

    One listing serves the loader, the labels (no image decoded), the folder's digest and
    `relay data import`, so all four agree on which files are the dataset and in what order.
    """
    train = imagefolder_samples(base / "train", None)
    test_dir = next((base / name for name in ("test", "val") if (base / name).is_dir()), None)
    if test_dir is None:
        return {"train": train}
    return {"train": train, "test": imagefolder_samples(test_dir, train.class_to_idx)}


def sample_files(base: Path, listings: dict[str, ImageFolderListing]) -> dict[str, list[tuple[str, str]]]:
    """Per split, (the file's path under ``base``, its class folder) of every sample, by sample id.

    Sample id i of a split is image i of its listing (torchvision's order, hidden files and
    what it cannot read left out), which is the order the loader stacks and the import writes,
    so this is the map from an id back to the file, which nothing else records.
    """
    files = {}
    for split, listing in listings.items():
        names = sorted(listing.class_to_idx, key=listing.class_to_idx.__getitem__)
        files[split] = [(Path(os.path.relpath(path, base)).as_posix(), names[label]) for path, label in listing.samples]
    return files


DATASETS: dict[str, Callable[..., DatasetSplits]] = {  # (root[, image_size]) -> splits
    "digits": load_digits,
    "synthetic": load_synthetic,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagefolder": load_imagefolder,
}

DATASET_REQUIRES_ROOT: set[str] = {"cifar10", "cifar100", "imagefolder"}

# Whether a horizontal flip keeps an image's class, i.e. whether the weak and strong views flip by
# default (`augment.weak.flip: null`). Natural photos are mirror-symmetric in distribution; a
# mirrored digit is another digit or none, and the synthetic templates are not symmetric either.
MIRROR_INVARIANT: dict[str, bool] = {
    "digits": False,
    "synthetic": False,
    "cifar10": True,
    "cifar100": True,
    "imagefolder": True,
}


def default_flip(name: str | None) -> bool:
    """Whether dataset ``name``'s views flip by default (MIRROR_INVARIANT); an unknown source (a folder of
    images imported by a user) is taken for natural images, as CIFAR and image folders are."""
    return MIRROR_INVARIANT.get(name or "", True)


# Image shape [C, H, W] of each dataset as its loader returns it, known without reading images (the
# driver compares shapes before a run); tests/unit/pipelines/test_data.py keeps it equal to the loaders.
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL),
    "synthetic": (1, IMAGE_SIZE_SMALL, IMAGE_SIZE_SMALL),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "imagefolder": (3, IMAGEFOLDER_SIZE, IMAGEFOLDER_SIZE),
}

# Classes of each dataset whose count is fixed (an image folder's is its class folders), known without reading it.
CLASS_COUNTS: dict[str, int] = {"digits": 10, "synthetic": SYNTHETIC_CLASSES, "cifar10": 10, "cifar100": 100}


# Loaders that take the image size themselves (from the original pixels); others are resized after loading.
SIZED_LOADERS: set[str] = {"digits", "imagefolder"}


def image_shape(name: str, image_size: int | None = None) -> tuple[int, int, int] | None:
    """[C, H, W] of dataset ``name`` read at ``image_size`` (`data.image_size`; None: its loader's own), known
    without reading images; None for a dataset not in IMAGE_SHAPES."""
    shape = IMAGE_SHAPES.get(name)
    if shape is None or image_size is None:
        return shape
    return (shape[0], image_size, image_size)


def load_dataset(name: str, root: str | None, image_size: int | None = None) -> DatasetSplits:
    """Look ``name`` up in DATASETS; an unknown name lists the valid ones.

    ``image_size`` (`data.image_size`), when given, makes every image ``image_size`` square: digits
    and image folders are read at that size, other datasets are resized bilinearly after loading.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    if image_size is None:
        return DATASETS[name](root)
    if image_size < 4:
        raise ValueError(f"image_size: expected at least 4 pixels, got {image_size}")
    if name in SIZED_LOADERS:
        return DATASETS[name](root, image_size)
    splits = DATASETS[name](root)
    test = None if splits.test is None else _resized(splits.test, image_size)
    return DatasetSplits(train=_resized(splits.train, image_size), test=test)


def _resized(dataset: ImageDataset, size: int) -> ImageDataset:
    if tuple(dataset.images.shape[-2:]) == (size, size):
        return dataset
    return dataclasses.replace(dataset, images=_resize_uint8(dataset.images.float(), size))


@dataclass(frozen=True)
class DatasetLabels:
    """A dataset's labels only (int64 numpy): all that drawing the split needs."""

    train: np.ndarray
    test: np.ndarray | None
    num_classes: int


def labels_of(splits: DatasetSplits) -> DatasetLabels:
    """The labels of a loaded dataset."""
    test = None if splits.test is None else splits.test.labels.numpy()
    return DatasetLabels(splits.train.labels.numpy(), test, splits.train.num_classes)


def _digits_labels() -> DatasetLabels:
    return DatasetLabels(_digits_table()[:, -1].astype(np.int64), None, 10)


@functools.cache  # read once per process: `relay validate`, every preflight and the loader share it
def _digits_table() -> np.ndarray:
    """scikit-learn's digits as shipped: one row per image, 64 pixels (0..16) then the label.

    Read from the file scikit-learn bundles, without importing scikit-learn: that import
    (3 s here) sat on `relay run`'s critical path before Ray starts, only to draw the split.
    The file is located through the package's import spec, which does not execute it; if a
    scikit-learn release moves it, scikit-learn's own ``load_digits`` (same rows, same order) is the
    fallback.
    """
    spec = importlib.util.find_spec("sklearn")
    shipped = Path(spec.origin).parent.joinpath(*DIGITS_CSV) if spec and spec.origin else None
    if shipped is None or not shipped.is_file():
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return np.column_stack([bunch.data, bunch.target]).astype(np.float64)
    with gzip.open(shipped, "rt") as handle:
        return np.loadtxt(handle, delimiter=",", dtype=np.float64)


def _synthetic_labels() -> DatasetLabels:
    labels = np.repeat(np.arange(SYNTHETIC_CLASSES, dtype=np.int64), SYNTHETIC_PER_CLASS)
    return DatasetLabels(labels, None, SYNTHETIC_CLASSES)


# Datasets whose labels are known without decoding images (and without torch); a test keeps
# each equal to its loader's labels.
LABELS_ONLY: dict[str, Callable[[], DatasetLabels]] = {"digits": _digits_labels, "synthetic": _synthetic_labels}


@functools.lru_cache(maxsize=4)
def cached_dataset(
    name: str, root: str | None, image_size: int | None = None, root_digest: str | None = None
) -> DatasetSplits:
    """Datasets are read once per process: Ray reuses workers across stages, and in-process runs
    reuse what the preflight read.

    ``root_digest`` (`data.root_digest`) is not read, only part of the cache key: a worker that
    outlives a change to the folder at ``root`` reads it again instead of serving the old images.
    """
    return load_dataset(name, root, image_size)


def load_labels(name: str, root: str | None, root_digest: str | None = None) -> DatasetLabels:
    """The labels of dataset ``name``: cheap for LABELS_ONLY, else read through its loader (same errors).

    An image folder's labels come from its file listing: the driver and `relay validate` need
    labels only, and decoding every image for them cost seconds and the whole dataset in memory.
    ``root_digest`` keys the cached CIFAR read (see ``cached_dataset``).
    """
    if name in LABELS_ONLY:
        return LABELS_ONLY[name]()
    if name == "imagefolder":
        return _imagefolder_labels(root)
    return labels_of(cached_dataset(name, root, None, root_digest))


def _imagefolder_labels(root: str | None) -> DatasetLabels:
    """An image folder's labels as its loader gives them, from the listing alone (no image decoded)."""
    listings = imagefolder_listings(imagefolder_base(root))
    for listing in listings.values():
        for path, _ in listing.samples:
            check_image_header(path)
    test = _listing_labels(listings["test"]) if "test" in listings else None
    return DatasetLabels(_listing_labels(listings["train"]), test, len(listings["train"].class_to_idx))


def root_digest(name: str, root: str | None) -> str:
    """sha256 over (file, size, mtime_ns) of every file dataset ``name`` reads under ``root``: `data.root_digest`.

    Why: stages are cached by their params, and `data.root` names a folder by path only; images
    replaced, added or removed there would otherwise meet the old split and models in the cache
    (a split indexing images that are gone). A listing and a stat per file, nothing is decoded.
    """
    digest = hashlib.sha256()
    for line in _imagefolder_stats(root) if name == "imagefolder" else _cifar_stats(name, root):
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()


def _stat_line(path: Path | str, base: Path, *fields: object) -> str:
    """One file of a dataset as text: its path under ``base``, the given fields, its size and mtime_ns."""
    stat = os.stat(path)
    return "\t".join(str(x) for x in (os.path.relpath(path, base), *fields, stat.st_size, stat.st_mtime_ns))


def _imagefolder_stats(root: str | None) -> Iterator[str]:
    """Every image the loader reads, with its split and label (a renamed class folder changes labels)."""
    base = imagefolder_base(root)
    for split, listing in imagefolder_listings(base).items():
        if listing.skipped:  # the driver lists the folder once per config read: said where the run starts
            left_out = "; ".join(f"{count} {reason}" for reason, count in listing.skipped.items())
            logger.warning("imagefolder: %s: left out %s", base / split, left_out)
        for path, label in listing.samples:
            yield _stat_line(path, base, split, label)


def _cifar_stats(name: str, root: str | None) -> Iterator[str]:
    """Every batch file (and the meta file) the CIFAR loader reads."""
    layout = CIFAR_LAYOUTS[name]
    folder = cifar_batches_folder(name, root)
    for file in (*layout.batch_files(), layout.meta):
        yield _stat_line(folder / file, folder)


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of float pixels in 0..255, rounded back to uint8."""
    import torch
    import torch.nn.functional as F

    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def _require_root(name: str, root: str | None, layout: str) -> Path:
    """Turn a missing/None root into an error that says what to place where."""
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root: set data.root to {layout}")
    try:
        path = Path(root).expanduser()
        found = "\x00" not in root and path.exists()
    except (OSError, RuntimeError) as exc:  # a name too long, `~user` without such a user
        reason = getattr(exc, "strerror", None) or exc
        raise FileNotFoundError(
            f"dataset {name!r}: expected {layout} at {root[:200]!r}; it cannot be a path ({reason})"
        ) from exc
    if not found:
        raise FileNotFoundError(f"dataset {name!r}: expected {layout} at {path}; got no such path")
    return path


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR version keeps what: its folder, batch files per split (torchvision's order), class names."""

    folder: str  # the folder the archive extracts to
    splits: dict[str, tuple[str, ...]]  # split -> batch files, read in this order
    meta: str  # the file holding the class names ...
    names_key: str  # ... under this key
    labels_key: str  # a batch's labels

    def batch_files(self) -> tuple[str, ...]:
        return tuple(name for names in self.splits.values() for name in names)


CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "batches.meta",
        "label_names",
        "labels",
    ),
    "cifar100": CifarLayout(
        "cifar-100-python", {"train": ("train",), "test": ("test",)}, "meta", "fine_label_names", "fine_labels"
    ),
}


def cifar_folder(path: Path, layout: CifarLayout) -> Path | None:
    """The folder holding the CIFAR batches: ``path/<folder>`` (torchvision's root) or ``path`` itself; None if neither."""
    for candidate in (path / layout.folder, path):
        if (candidate / layout.meta).is_file():
            return candidate
    return None


def cifar_missing(folder: Path, layout: CifarLayout) -> list[str]:
    """The batch files ``folder`` lacks: an error names them all at once."""
    return [name for name in layout.batch_files() if not (folder / name).is_file()]


def read_cifar_file(path: Path) -> dict:
    """One CIFAR python file (a pickle) as its dict; a file that does not unpickle is a ValueError naming it.

    No checksum: the in-memory loader and `relay data import` read the same files by the same
    rule, and a valid batch loads whatever its md5 (torchvision refuses a re-pickled one and
    advises a download Relay never does).
    """
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError) as exc:
        raise ValueError(f"cifar: could not read {path} ({exc}); re-extract the CIFAR archive there") from exc
    if not isinstance(entry, dict):
        raise ValueError(
            f"cifar: {path} holds a {type(entry).__name__}, not a CIFAR dict; re-extract the CIFAR archive there"
        )
    return entry


def cifar_batch(path: Path, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 3, 32, 32], int64 labels [N]) of one batch file; one missing or malformed part names the file."""
    entry = read_cifar_file(path)
    try:
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[labels_key], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(
            f"cifar: {path} is not a CIFAR batch (expected 'data' and {labels_key!r}; {exc!r}); "
            "re-extract the CIFAR archive there"
        ) from exc
    if len(images) != len(labels):
        raise ValueError(
            f"cifar: {path} holds {len(images)} images but {len(labels)} labels; re-extract the CIFAR archive there"
        )
    return images, labels


def cifar_classes(folder: Path, layout: CifarLayout) -> list[str]:
    """The class names of the meta file, in label order."""
    path = folder / layout.meta
    entry = read_cifar_file(path)
    if layout.names_key not in entry:
        raise ValueError(f"cifar: {path} lacks {layout.names_key!r}; re-extract the CIFAR archive there")
    return [str(name) for name in entry[layout.names_key]]


def cifar_batches_folder(name: str, root: str | None) -> Path:
    """The folder of ``name``'s batches under `data.root`, with every batch file there; else an error naming what is missing.

    The root is checked before anything heavy is imported: a wrong path is reported at once.
    """
    layout = CIFAR_LAYOUTS[name]
    what = f"the CIFAR python batches (the extracted {layout.folder}/ folder from cs.toronto.edu/~kriz/cifar.html)"
    base = _require_root(name, root, what)
    folder = cifar_folder(base, layout)
    if folder is None:
        raise FileNotFoundError(
            f"dataset {name!r}: expected {base / layout.folder} (or {base} itself) to hold {what}; "
            f"got no {layout.meta}. Place the python batches there (Relay never downloads data)."
        )
    missing = cifar_missing(folder, layout)
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: {folder} lacks {', '.join(missing)}; extract the whole {layout.folder}/ archive there"
        )
    return folder


def _load_cifar(name: str, root: str | None) -> DatasetSplits:
    """Read CIFAR's python batches without downloading and without torchvision's md5 check (see read_cifar_file)."""
    import torch

    layout = CIFAR_LAYOUTS[name]
    folder = cifar_batches_folder(name, root)
    names = tuple(cifar_classes(folder, layout))

    def split(split_name: str) -> ImageDataset:
        batches = [cifar_batch(folder / file, layout.labels_key) for file in layout.splits[split_name]]
        images = np.concatenate([images for images, _ in batches])
        labels = np.concatenate([labels for _, labels in batches])
        return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), len(names), names)

    return DatasetSplits(train=split("train"), test=split("test"))


def _read_imagefolder(listing: ImageFolderListing, image_size: int) -> ImageDataset:
    """Load every image of one ImageFolder split into one uint8 tensor [N, 3, size, size]."""
    import torch

    samples = listing.samples
    stacked = torch.stack([imagefolder_image(path, image_size) for path, _ in samples]).to(torch.uint8)
    names = tuple(sorted(listing.class_to_idx, key=listing.class_to_idx.__getitem__))
    return ImageDataset(stacked, torch.from_numpy(_listing_labels(listing)), len(names), names)


def _listing_labels(listing: ImageFolderListing) -> np.ndarray:
    return np.asarray([label for _, label in listing.samples], dtype=np.int64)
