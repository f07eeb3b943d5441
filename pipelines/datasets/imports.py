"""`relay data import SOURCE DEST` and `relay data info DEST`: sources streamed into the shard format.

A source is a registered name (``digits``, ``synthetic``) or a folder that one source recognises
(a CIFAR-10/100 root, an ImageFolder). Each source yields its splits as chunks of (uint8 images,
labels), and the chunks go straight into ``shards.SplitWriter``: CIFAR one batch file at a time
(CIFAR-100 keeps train in one 150 MB file), an ImageFolder a few hundred decoded files at a time,
so an import holds one chunk and one shard, never the dataset. Digits and synthetic are bundled
and tiny, so they are built whole as the in-memory loaders build them. Every source stores the
exact pixels its in-memory loader produces, in the same order, so sample id i is image i of
`data.name: <source>` and a pipeline gives the same results from either path.

Bad input (an unknown source, a folder no source recognises, an image that does not decode, a
destination holding a different dataset) raises ValueError or OSError naming the problem, and an
import that fails halfway removes the shards it wrote: no manifest, no half dataset.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipelines import data as datasets
from pipelines.datasets import checks, codec, shards
from pipelines.datasets.catalog import SHARDED

Chunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
IMAGEFOLDER_CHUNK = 256


@dataclass(frozen=True)
class SourceData:
    """An opened source: class names, image shape, and per split its row count and a chunk iterator."""

    classes: list[str]
    image_shape: tuple[int, int, int]
    splits: dict[str, tuple[int, Chunks]]


@dataclass(frozen=True)
class Source:
    """One importable source: how to recognise its folder (None: a name only) and how to open it."""

    name: str
    description: str
    open: Callable[[Path | None, Mapping[str, Any]], SourceData]
    recognise: Callable[[Path], Path | None] | None = None
    options: tuple[str, ...] = field(default_factory=tuple)


# --- the sources -----------------------------------------------------------------------------------


def _whole(loaded: datasets.DatasetSplits) -> SourceData:
    """A bundled in-memory dataset (digits, synthetic) as one chunk per split."""
    train = loaded.train
    splits = {"train": (len(train.labels), lambda: iter([(train.images.numpy(), train.labels.numpy())]))}
    return SourceData([str(c) for c in range(train.num_classes)], tuple(train.images.shape[1:]), splits)


def _cifar_folder(path: Path, folder: str) -> Path | None:
    """The folder holding the CIFAR batches: ``path/folder`` (torchvision's root) or ``path`` itself."""
    for candidate in (path / folder, path):
        if (candidate / ("batches.meta" if folder.startswith("cifar-10-") else "meta")).is_file():
            return candidate
    return None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"cifar: could not read {path} ({exc}); re-extract the CIFAR archive there") from exc


def _open_cifar(files: dict[str, list[str]], meta: tuple[str, str], labels_key: str) -> Callable[..., SourceData]:
    """A CIFAR opener over its python batch files (torchvision's layout and order).

    The row counts are CIFAR's own (50000 train, 10000 test): they only size the progress bar,
    so the files are read once, while they are written.
    """

    def chunks(base: Path, names: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for name in names:
            entry = _unpickle(base / name)
            yield np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(entry[labels_key])

    def open_(base: Path | None, options: Mapping[str, Any]) -> SourceData:
        missing = [name for names in files.values() for name in names if not (base / name).is_file()]
        if missing:
            raise FileNotFoundError(f"cifar: {base} lacks {', '.join(missing)}; extract the whole archive there")
        classes = [str(c) for c in _unpickle(base / meta[0])[meta[1]]]
        counts = {"train": 50000, "test": 10000}
        return SourceData(
            classes,
            (3, 32, 32),
            {split: (counts[split], lambda names=names: chunks(base, names)) for split, names in files.items()},
        )

    return open_


def _recognise_imagefolder(path: Path) -> Path | None:
    return path if (path / "train").is_dir() else None


def _open_imagefolder(base: Path | None, options: Mapping[str, Any]) -> SourceData:
    """``base/train/<class>/*`` (+ ``test/`` or ``val/``), each image resized as the in-memory loader does."""
    size = int(options.get("image_size") or datasets.IMAGEFOLDER_SIZE)
    train, mapping = datasets.imagefolder_samples(base / "train", None)
    splits = {"train": (len(train), lambda: _imagefolder_chunks(train, size))}
    test_dir = next((base / name for name in ("test", "val") if (base / name).is_dir()), None)
    if test_dir is not None:
        test, _ = datasets.imagefolder_samples(test_dir, mapping)
        splits["test"] = (len(test), lambda: _imagefolder_chunks(test, size))
    return SourceData(sorted(mapping, key=mapping.__getitem__), (3, size, size), splits)


def _imagefolder_chunks(samples: list[tuple[str, int]], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(samples), IMAGEFOLDER_CHUNK):
        part = samples[start : start + IMAGEFOLDER_CHUNK]
        images = np.empty((len(part), 3, size, size), dtype=np.uint8)
        for row, (path, _) in enumerate(part):
            images[row] = datasets.imagefolder_image(path, size).numpy()  # ValueError names a file that is no image
        yield images, np.asarray([label for _, label in part], dtype=np.int64)


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
        Source(
            "cifar10",
            "a folder holding cifar-10-batches-py/ (or that folder itself)",
            _open_cifar(
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                ("batches.meta", "label_names"),
                "labels",
            ),
            lambda path: _cifar_folder(path, "cifar-10-batches-py"),
        ),
        Source(
            "cifar100",
            "a folder holding cifar-100-python/ (or that folder itself)",
            _open_cifar({"train": ["train"], "test": ["test"]}, ("meta", "fine_label_names"), "fine_labels"),
            lambda path: _cifar_folder(path, "cifar-100-python"),
        ),
        Source(
            "imagefolder",
            "a folder holding train/<class>/<image> (and test/ or val/), resized to --image-size (32)",
            _open_imagefolder,
            _recognise_imagefolder,
            ("image_size",),
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


def claims(source: str) -> bool:
    """Whether SOURCE is a registered name or an existing folder (which ``import_dataset`` then inspects)."""
    return source in SOURCES or Path(source).expanduser().is_dir()


# --- import and info ---------------------------------------------------------------------------------


def import_dataset(source: str, dest: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Stream ``source`` into shards at ``dest``; a summary to print. See the module docstring for the rules."""
    found = resolve(source)
    if found is None:
        names = ", ".join(f"{name} ({s.description})" for name, s in SOURCES.items())
        raise ValueError(f"SOURCE {source!r} is neither a source name nor a folder one recognises; valid: {names}")
    kind, folder = found
    for key, least in (("image_size", 4), ("rows_per_group", 1)):
        if options.get(key) is not None and int(options[key]) < least:
            raise ValueError(f"{key.replace('_', '-')}: expected at least {least}, got {options[key]}")
    foreign = sorted(key for key in ("image_size",) if options.get(key) and key not in kind.options)
    if foreign:
        raise ValueError(
            f"source {kind.name!r} takes no {', '.join(foreign)} (only: {', '.join(kind.options) or 'none'})"
        )
    identity = _identity(kind, folder, options)
    if shards.dataset_at(dest):
        return _already_there(dest, identity)
    if not shards.is_empty(dest):
        raise ValueError(f"{dest} is not empty and holds no Relay dataset; import into a new or empty destination")
    opened = kind.open(folder, options)
    encoding = codec.choose_encoding(str(options.get("encoding") or "auto"), opened.image_shape)
    splits = {name: _progress(name, count, chunks) for name, (count, chunks) in opened.splits.items()}
    manifest = shards.write_dataset(
        dest, opened.classes, opened.image_shape, encoding, splits, options.get("rows_per_group"), source=identity
    )
    return {**_summary(dest, manifest), "use": f"relay run CONFIG data.name={SHARDED} data.uri={dest}"}


def _identity(kind: Source, folder: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two imports the same import: the source, its folder, and the options that change the bytes."""
    chosen = {key: options[key] for key in ("encoding", "rows_per_group", *kind.options) if options.get(key)}
    return {"name": kind.name, "location": None if folder is None else str(folder), "options": chosen}


def _already_there(dest: str, identity: dict[str, Any]) -> dict[str, Any]:
    """A repeated import is a no-op; an import over another dataset is refused before anything is read."""
    manifest = shards.read_manifest(dest)
    if dict(manifest.source) != identity:
        raise ValueError(
            f"{dest} already holds a different dataset (digest {manifest.digest[:16]}, from {dict(manifest.source)}); "
            "import into a new destination, or delete that one first"
        )
    return {**_summary(dest, manifest), "note": "already imported from this source: nothing written"}


def _progress(split: str, count: int, chunks: Chunks) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A split's chunks, as they are read, with a progress bar over its rows."""
    with tqdm(total=count, desc=f"import {split}", unit="img", mininterval=1.0) as bar:
        for images, labels in chunks():
            yield images, labels
            bar.update(len(images))


def describe(uri: str, verify: bool) -> dict[str, Any]:
    """What ``relay data info`` prints; ``verify`` also hashes every shard and decodes every image."""
    manifest = shards.read_manifest(uri)
    for split in manifest.splits:
        checks.read_labels(uri, manifest, split)  # sizes, schemas, sample ids, label range
    summary = _summary(uri, manifest)
    if verify:
        checks.verify_digests(uri, manifest)
        from pipelines.datasets.rows import ShardRows

        for split, info in manifest.splits.items():
            rows = ShardRows(uri, manifest, split)
            for start in range(0, info.count, manifest.rows_per_group):
                rows.read(np.arange(start, min(start + manifest.rows_per_group, info.count)))
        summary["verified"] = "every shard's sha256 matches and every image decodes"
    return summary


def _summary(uri: str, manifest: shards.DatasetManifest) -> dict[str, Any]:
    c, h, w = manifest.image_shape
    splits = {
        name: f"{s.count} images ({s.unlabeled} without a label) in {len(s.shards)} shard(s), "
        f"{sum(x.bytes for x in s.shards) / 1e6:.1f} MB"
        for name, s in manifest.splits.items()
    }
    return {
        "dataset": uri,
        "digest": manifest.digest,
        "source": manifest.source.get("name", "?"),
        "classes": f"{manifest.num_classes} ({', '.join(manifest.classes[:10])}{', ...' if manifest.num_classes > 10 else ''})",
        "images": f"{c}x{h}x{w} uint8, stored {manifest.encoding}, {manifest.rows_per_group} rows a row group",
        **{f"split {name}": text for name, text in splits.items()},
    }
