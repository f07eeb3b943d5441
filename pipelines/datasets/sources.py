"""The sources `relay data import` reads: each one a ``Source`` that recognises its folder (or is a name only)
and opens it as, per split, a row count and chunks of (uint8 images, labels).

CIFAR is read one batch file at a time (CIFAR-100 keeps train in one 150 MB file), an image folder a few
hundred decoded files at a time, so an import holds one chunk, never the dataset; digits and synthetic
are bundled and tiny, so they are built whole as the in-memory loaders build them. Every source yields
the exact pixels its in-memory loader (pipelines/data.py) produces, in the same order, so sample id i is
image i of `data.name: <source>`. A new source is one ``Source`` in ``SOURCES``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import data as datasets
from pipelines.datasets import checks, shards
from pipelines.image_folder import imagefolder_image

Chunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
IMAGEFOLDER_CHUNK = 256


@dataclass(frozen=True)
class SourceData:
    """An opened source: class names, image shape, per split its row count and a chunk iterator, and
    the files it leaves out (reason -> count) so the import can say so."""

    classes: list[str]
    image_shape: tuple[int, int, int]
    splits: dict[str, tuple[int, Chunks]]
    skipped: dict[str, int] = field(default_factory=dict)
    # an image folder's: per split, (path under the folder, class) by sample id (``datasets.sample_files``)
    files: dict[str, list[tuple[str, str]]] | None = None


@dataclass(frozen=True)
class Source:
    """One importable source: how to recognise its folder (None: a name only) and how to open it."""

    name: str
    description: str
    open: Callable[[Path | None, Mapping[str, Any]], SourceData]
    recognise: Callable[[Path], Path | None] | None = None
    options: tuple[str, ...] = field(default_factory=tuple)
    # a fingerprint of the folder's files, for a source whose folder can change after the import
    files: Callable[[Path], dict[str, Any]] | None = None


def _whole(loaded: datasets.DatasetSplits) -> SourceData:
    """A bundled in-memory dataset (digits, synthetic) as one chunk per split."""
    train = loaded.train
    splits = {"train": (len(train.labels), lambda: iter([(train.images.numpy(), train.labels.numpy())]))}
    return SourceData([str(c) for c in range(train.num_classes)], tuple(train.images.shape[1:]), splits)


def _open_cifar(name: str) -> Callable[..., SourceData]:
    """A CIFAR opener over its python batch files, read by the in-memory loader's rule (pipelines/data.py:
    CIFAR_LAYOUTS, no checksum), so a folder one path reads the other reads too.

    The row counts are CIFAR's own (50000 train, 10000 test): they only size the progress bar,
    so the files are read once, while they are written.
    """
    layout = datasets.CIFAR_LAYOUTS[name]

    def chunks(base: Path, names: tuple[str, ...]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for file in names:
            yield datasets.cifar_batch(base / file, layout.labels_key)

    def open_(base: Path | None, options: Mapping[str, Any]) -> SourceData:
        missing = datasets.cifar_missing(base, layout)
        if missing:
            raise FileNotFoundError(f"cifar: {base} lacks {', '.join(missing)}; extract the whole archive there")
        classes = datasets.cifar_classes(base, layout)
        counts = {"train": 50000, "test": 10000}
        return SourceData(
            classes,
            (3, 32, 32),
            {split: (counts[split], lambda names=names: chunks(base, names)) for split, names in layout.splits.items()},
        )

    return open_


# Photos torchvision does not read: a train/ of them is still an image folder, whose import says so.
UNREAD_PHOTO_SUFFIXES = (".gif", ".heic", ".heif", ".avif", ".jxl")


def recognise_imagefolder(path: Path) -> Path | None:
    """``path`` when its train/ looks like an image folder, else None: it holds a photo (the first one found ends
    the look), or no file at all yet (empty class folders: the import says where the images go), or it cannot be
    listed (the import says so).

    Why not any folder with a train/: a plug-in's folder source may have one (train/ of .npy arrays), and
    `relay data import` refuses a folder two packages claim, so Relay's claim on every train/ kept the plug-in
    from its own folder, advising to uninstall Relay. A train/ whose files are none of them photos is no
    image folder, and told that no source reads it.
    """
    train = path / "train"
    if not train.is_dir():
        return None
    try:
        os.scandir(train).close()
    except OSError:
        return path
    files = False
    for _, folders, names in os.walk(train):
        folders[:] = [name for name in folders if not name.startswith(".")]
        visible = [name.lower() for name in names if not name.startswith(".")]
        if any(name.endswith(shards.IMAGE_SUFFIXES + UNREAD_PHOTO_SUFFIXES) for name in visible):
            return path
        files = files or bool(visible)
    return None if files else path


def _open_imagefolder(base: Path | None, options: Mapping[str, Any]) -> SourceData:
    """``base/train/<class>/*`` (+ ``test/`` or ``val/``), each image resized as the in-memory loader does."""
    size = int(options.get("image_size") or datasets.IMAGEFOLDER_SIZE)
    listings = datasets.imagefolder_listings(base)
    splits = {
        split: (len(listing.samples), lambda samples=listing.samples: _imagefolder_chunks(samples, size))
        for split, listing in listings.items()
    }
    skipped: dict[str, int] = {}
    for listing in listings.values():
        for reason, count in listing.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    mapping = listings["train"].class_to_idx
    classes = sorted(mapping, key=mapping.__getitem__)
    return SourceData(classes, (3, size, size), splits, skipped, datasets.sample_files(base, listings))


def _imagefolder_files(base: Path) -> dict[str, Any]:
    """The fingerprint (``checks.files_fingerprint``) of every image file an import of ``base`` reads, by split."""
    return checks.files_fingerprint(
        base,
        (
            (split, path)
            for split, listing in datasets.imagefolder_listings(base).items()
            for path, _ in listing.samples
        ),
    )


def _cifar_files(name: str) -> Callable[[Path], dict[str, Any]]:
    """The fingerprint (``checks.files_fingerprint``) of the batch and meta files a CIFAR import reads (those there:
    a missing one is the opener's error to name)."""
    layout = datasets.CIFAR_LAYOUTS[name]
    named = [(split, file) for split, files in layout.splits.items() for file in files] + [("meta", layout.meta)]

    def fingerprint(folder: Path) -> dict[str, Any]:
        return checks.files_fingerprint(
            folder, ((split, folder / file) for split, file in named if (folder / file).is_file())
        )

    return fingerprint


def _imagefolder_chunks(samples: list[tuple[str, int]], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(samples), IMAGEFOLDER_CHUNK):
        part = samples[start : start + IMAGEFOLDER_CHUNK]
        images = np.empty((len(part), 3, size, size), dtype=np.uint8)
        for row, (path, _) in enumerate(part):
            images[row] = imagefolder_image(path, size).numpy()  # ValueError names a file that is no image
        yield images, np.asarray([label for _, label in part], dtype=np.int64)


def _cifar_source(name: str, folder: str) -> Source:
    """The CIFAR source ``name``: the python-pickle batches in ``folder`` (or a folder holding it)."""
    return Source(
        name,
        f"a folder holding {folder}/ (or that folder itself)",
        _open_cifar(name),
        lambda path: datasets.cifar_folder(path, datasets.CIFAR_LAYOUTS[name]),
        files=_cifar_files(name),
    )


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "digits",
            "scikit-learn's bundled 8x8 digits at 16x16 (1797 images)",
            lambda b, o: _whole(datasets.load_digits()),
        ),
        Source(
            "synthetic", "10 classes x 200 noisy templates, 1x16x16", lambda b, o: _whole(datasets.load_synthetic())
        ),
        _cifar_source("cifar10", "cifar-10-batches-py"),
        _cifar_source("cifar100", "cifar-100-python"),
        Source(
            "imagefolder",
            "a folder holding train/<class>/<image> (and test/ or val/), resized to --image-size (32)",
            _open_imagefolder,
            recognise_imagefolder,
            ("image_size",),
            _imagefolder_files,
        ),
    )
}


def resolve(source: str) -> tuple[Source, Path | None] | None:
    """(the source, its folder) that ``source`` names: a registered name, or a folder one source recognises."""
    if source in SOURCES:
        if SOURCES[source].recognise is not None:
            raise ValueError(f"source {source!r} reads a folder: pass {SOURCES[source].description} as SOURCE")
        return SOURCES[source], None
    path = Path(source).expanduser()
    if not path.is_dir():
        return None
    for candidate in SOURCES.values():
        folder = candidate.recognise(path.resolve()) if candidate.recognise is not None else None
        if folder is not None:
            return candidate, folder
    return None
