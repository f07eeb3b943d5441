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
destination holding a different dataset, a destination inside the source folder, a missing
bucket) raises ValueError or OSError naming the problem, and an import that fails halfway or is
interrupted removes the shards and folders it wrote: no manifest, no half dataset. A repeated
import is a no-op only while the destination and the source are what the first import made and
read (a folder source: its files' names, sizes and times); a destination holding only what an
unfinished (killed) import leaves, its marker (``shards.IMPORT_MARKER``) included, is cleared and
imported again. Nothing else is ever deleted: a folder of Parquet files without that marker is
refused, whoever wrote it.

A SOURCE that is a Relay dataset (a folder or URI holding a manifest) is copied to DEST as it is,
once its shards pass the checks a run makes (schema, rows, sample ids, labels), each file checked
against the manifest's sha256 as it streams: moving a dataset to S3 or a cluster mount keeps its
digest, where the data's original source may be gone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from tqdm import tqdm

from pipelines import data as datasets
from pipelines.datasets import checks, codec, shards
from pipelines.datasets.catalog import SHARDED
from pipelines.image_folder import imagefolder_image

Chunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
IMAGEFOLDER_CHUNK = 256
MAX_IMAGE_SIZE = 1024  # data.image_size's bound (pipelines/schema.py, DataSection): the same images either way
OPTION_BOUNDS: dict[str, tuple[int, int | None]] = {"image_size": (4, MAX_IMAGE_SIZE), "rows_per_group": (1, None)}

log = logging.getLogger(__name__)


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


# --- the sources -----------------------------------------------------------------------------------


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


def _recognise_imagefolder(path: Path) -> Path | None:
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


def sample_files_csv(files: Mapping[str, list[tuple[str, str]]]) -> bytes:
    """``shards.SAMPLE_FILES``: one row per sample, ``split,sample_id,path,class``, path relative to the source folder.

    Why: a sample id is a position, and the shards keep no file name, so without this nobody can
    tell which photo a pseudo label or a misclassified id is. CSV, quoted where needed, for any tool.
    """
    import pyarrow.csv as pacsv

    rows = [
        (split, sample_id, path, name) for split, pairs in files.items() for sample_id, (path, name) in enumerate(pairs)
    ]
    table = pa.table(
        {
            "split": pa.array([r[0] for r in rows], pa.string()),
            "sample_id": pa.array([r[1] for r in rows], pa.int64()),
            "path": pa.array([r[2] for r in rows], pa.string()),
            "class": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


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
            _open_cifar("cifar10"),
            lambda path: datasets.cifar_folder(path, datasets.CIFAR_LAYOUTS["cifar10"]),
            files=_cifar_files("cifar10"),
        ),
        Source(
            "cifar100",
            "a folder holding cifar-100-python/ (or that folder itself)",
            _open_cifar("cifar100"),
            lambda path: datasets.cifar_folder(path, datasets.CIFAR_LAYOUTS["cifar100"]),
            files=_cifar_files("cifar100"),
        ),
        Source(
            "imagefolder",
            "a folder holding train/<class>/<image> (and test/ or val/), resized to --image-size (32)",
            _open_imagefolder,
            _recognise_imagefolder,
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


def claims(source: str) -> bool:
    """Whether this package imports SOURCE: a registered name; a ``file://`` URI holding a Relay dataset; any other
    URI (s3://, gs://: ``import_dataset`` then inspects it, and copies a Relay dataset there as it is); a folder
    holding a Relay dataset, or one a source recognises (an image folder: photos under train/); or a folder
    laid out almost as one reads it (empty, class folders without train/), whose import says what to change.

    Why not every folder: `relay data import` gives SOURCE to the one installed package that claims it, and while
    this claimed any folder, a plug-in's folder source (a folder of .npy arrays) was never reached. Why every
    remote URI, unchecked: whether it holds a dataset is known only by asking the store (S3 looks up the bucket's
    region first), which is slow and, for an endpoint that does not answer, waits out its timeouts, on every
    import of a plug-in's URI; so `relay data import` gives a remote URI another package also claims to that
    package, and this claim decides only where no other package claims it.
    """
    if source in SOURCES:
        return True
    if source.startswith("file://"):
        return _holds_dataset(source)
    if "://" in source:
        return True
    path = Path(source).expanduser()
    if not path.is_dir():
        return False
    return _holds_dataset(source) or resolve(source) is not None or _folder_problem(path) is not None


# --- import and info ---------------------------------------------------------------------------------


def import_dataset(source: str, dest: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Stream ``source`` into shards at ``dest``; a summary to print. See the module docstring for the rules.

    Everything about the destination (its bucket, a dataset already there, leftovers of an
    unfinished import, foreign files) is settled before the source's images are read. Ctrl-C,
    and SIGTERM (which `relay data import` raises as a SystemExit), log one line, as `relay run` does:
    that the import was interrupted, what is left at ``dest`` (``shards.write_dataset`` removed what
    it wrote), and the command to start again.
    The storage failing once writing began (an S3 endpoint that goes away mid-import) is
    no bad input: ImportStoreError says the same two things.
    """
    writing = False
    try:
        if _holds_dataset(source):
            manifest = _check_copy(source, dest, options)
            if shards.dataset_at(dest):
                return _copied_already(source, dest, manifest)
            writing = True
            return _copy(source, dest, manifest)
        kind, folder = _resolve(source)
        if folder is not None:
            _check_apart(Path(source).expanduser().resolve(), dest)
        _check_options(kind, folder, options)
        shards.check_bucket(dest)
        identity = _identity(kind, folder, options)
        if shards.dataset_at(dest):
            return _already_there(dest, kind, identity, options)
        writing = True
        return _write(kind, folder, dest, identity, options)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM, which the CLI raises as a SystemExit (exit 143)
        left = _left_at(dest) if writing else f"nothing was written to {dest}"
        log.warning("import interrupted; %s; start it again with: %s", left, _again(source, dest, options))
        raise
    except shards.StoreWriteError as exc:
        left = _kept_at(dest) if exc.kept else _left_at(dest)
        raise ImportStoreError(f"{left}; start it again with: {_again(source, dest, options)}") from exc


# --- a Relay dataset copied to another store ------------------------------------------------------

COPY_BLOCK = 8 << 20  # bytes a copy holds at once: a shard is streamed, never held whole


def _holds_dataset(source: str) -> bool:
    """Whether SOURCE is a Relay dataset (a manifest there), not a source name: what an import copies as it is."""
    if source in SOURCES or ("://" not in source and not Path(source).expanduser().is_dir()):
        return False
    return shards.dataset_at(source)


def _check_copy(source: str, dest: str, options: Mapping[str, Any]) -> shards.DatasetManifest:
    """The source dataset's manifest (its digest checked), once nothing forbids copying it to ``dest``.

    A copy keeps the dataset as it is, so an option that would change its bytes is refused, not ignored.
    """
    given = [f"--{key.replace('_', '-')}" for key, value in options.items() if value and value != "auto"]
    if given:
        raise ValueError(
            f"SOURCE {source} is a Relay dataset, which an import copies as it is (same shards, same digest): "
            f"{', '.join(given)} would change it; drop {', '.join(given)}, or import the data's original source"
        )
    if "://" not in source:
        _check_apart(Path(source).expanduser().resolve(), dest)
    manifest = shards.read_manifest(source)
    shards.check_bucket(dest)
    _check_source_shards(source, manifest)
    return manifest


def _check_source_shards(source: str, manifest: shards.DatasetManifest) -> None:
    """Refuse (DatasetError, nothing written) a source dataset whose shards a run would refuse: the cheap checks
    `relay data info` and a run's preflight make (``checks.read_labels``: every shard's size, schema and rows from
    its footer, its sample ids and labels).

    Why: the copy checks each file's sha256 against the manifest, and a shard rewritten with another schema and
    its manifest sealed around it (CONTRACTS' by-hand recipe) matched, so the copy said every file matched the
    source's and advised `relay run`, which then refused it. Two narrow columns a shard, next to copying all of it.
    """
    try:
        for split in manifest.splits:
            checks.read_labels(source, manifest, split)
    except shards.DatasetError as exc:
        raise shards.DatasetError(f"SOURCE {source}: {exc}; nothing was copied") from exc


def _manifest_there(dest: str, retry: str) -> shards.DatasetManifest:
    """The manifest of the dataset already at DEST; one that does not check out is refused, saying ``retry``."""
    try:
        return shards.read_manifest(dest)
    except shards.ManifestError as exc:
        raise ValueError(
            f"{dest} holds a Relay dataset whose manifest does not check out ({exc.reason}); {retry}"
        ) from exc


def _copied_already(source: str, dest: str, manifest: shards.DatasetManifest) -> dict[str, Any]:
    """A repeated copy is a no-op while DEST holds the same dataset (same digest, every shard at its size)."""
    retry = f"remove {dest} (or copy into a new path) to copy it again"
    there = _manifest_there(dest, retry)
    if there.digest != manifest.digest:
        raise ValueError(
            f"{dest} already holds a different dataset (digest {there.digest[:16]}, {source} is "
            f"{manifest.digest[:16]}); copy into a new destination, or delete that one first"
        )
    changed = checks.changed_shards(dest, there)
    if changed:
        raise ValueError(f"{dest} changed after it was written: {', '.join(changed)}; {retry}")
    return {**_summary(dest, there), "note": f"already a copy of {source}: nothing written"}


def _copy(source: str, dest: str, manifest: shards.DatasetManifest) -> dict[str, Any]:
    """Copy the dataset at ``source`` to ``dest`` file by file, each checked against the manifest's sha256 as
    it streams, the manifest last; the copy's digest is then read back and must be the source's.

    Why not re-import: the copy is the same dataset (same bytes, same digest, so `data.digest` pins both),
    and the data's original source may be gone. Like an import it writes its marker first and removes
    what it wrote if anything fails, so a failed copy leaves no half dataset.
    """
    notes = _clear_unfinished(dest)
    src_fs, src_root = shards.open_root(source)
    fs, root = shards.open_root(dest)
    names = [shard.path for split in manifest.splits.values() for shard in split.shards]
    expected = {shard.path: shard.sha256 for split in manifest.splits.values() for shard in split.shards}
    expected.update(manifest.source.get("files_written", {}))
    names += list(manifest.source.get("files_written", {}))
    written: list[str] = []
    folders = [] if fs.get_file_info(root).type != pafs.FileType.NotFound else [root]
    folders = [*(f"{root}/{split}" for split in manifest.splits), *folders]
    marker = f"{root}/{shards.IMPORT_MARKER}"
    try:
        shards.write_marker(dest)
        for name in tqdm(names, desc="copy", unit="file", mininterval=1.0):
            written.append(f"{root}/{name}")
            _copy_file(src_fs, f"{src_root}/{name}", fs, f"{root}/{name}", expected[name], f"{source}: {name}")
        written.append(f"{root}/{shards.MANIFEST}")
        _copy_file(src_fs, f"{src_root}/{shards.MANIFEST}", fs, f"{root}/{shards.MANIFEST}", None, source)
        copied = shards.read_manifest(dest)
        if copied.digest != manifest.digest:
            raise shards.DatasetError(
                f"{dest}: the copy's digest {copied.digest[:16]} is not the source's {manifest.digest[:16]}; "
                "copy it again"
            )
    except BaseException as exc:
        kept = shards.remove(dest, [*written, marker], folders)
        if isinstance(exc, shards.StoreWriteError):
            exc.kept = bool(kept)
        raise
    shards.remove(dest, [marker])
    note = f"copied from {source}: every file's sha256 and the digest match the source's"
    return {**_summary(dest, copied), **notes, "note": note, "use": use_line(dest)}


def _copy_file(
    src_fs: pafs.FileSystem, src: str, fs: pafs.FileSystem, path: str, sha256: str | None, named: str
) -> None:
    """Stream one file from ``src`` to ``path`` in COPY_BLOCK pieces, refusing it (DatasetError) when its sha256
    is not ``sha256``: a source shard changed after its import is not copied as if it were the dataset."""
    digest = hashlib.sha256()
    try:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        stream = fs.open_output_stream(path)
    except (OSError, pa.ArrowException) as exc:
        raise shards.StoreWriteError(path, exc) from exc
    with stream, _source_blocks(src_fs, src, named) as blocks:
        for block in blocks:
            digest.update(block)
            try:
                stream.write(block)
            except (OSError, pa.ArrowException) as exc:
                raise shards.StoreWriteError(path, exc) from exc
    if sha256 is not None and digest.hexdigest() != sha256:
        raise shards.DatasetError(
            f"{named}: sha256 {digest.hexdigest()[:16]} does not match the manifest's {sha256[:16]}: it changed "
            f"after the import, so the source is no longer the dataset its manifest describes; nothing was copied"
        )


@contextmanager
def _source_blocks(fs: pafs.FileSystem, path: str, named: str) -> Iterator[Iterator[bytes]]:
    """The file at ``path`` in COPY_BLOCK pieces; a read that fails is the source's problem, said as such."""
    try:
        with fs.open_input_stream(path) as reader:

            def blocks() -> Iterator[bytes]:
                while block := reader.read(COPY_BLOCK):
                    yield block

            yield blocks()
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, shards.StoreWriteError):
            raise
        raise shards.DatasetError(f"{named}: could not read it ({shards.one_line(exc)}); nothing was copied") from exc


class ImportStoreError(OSError):
    """The destination's storage failed while an import wrote to it (a shard or the manifest): exit 1, not
    bad input. The message says what the destination still holds and the command that starts the import
    again; the storage's error is its cause, for the CLI to say why (a store that stopped answering, refused
    access, or failed to write). ``store_failed`` is how the CLI, which imports no pipeline code, knows it.
    """

    store_failed = True


def _kept_at(dest: str) -> str:
    """What a failed import may have left at ``dest`` when its cleanup could not remove it either."""
    return (
        f"{dest} may still hold shard files of it and no manifest (the store did not answer when the import "
        f"removed them): `relay data info {shlex.quote(dest)}` calls that an unfinished import, and the next import clears it"
    )


def _write(
    kind: Source, folder: Path | None, dest: str, identity: dict[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """Clear what an unfinished import left at ``dest``, then stream the source into it, manifest last."""
    notes = _clear_unfinished(dest)
    opened = kind.open(folder, options)
    encoding = codec.choose_encoding(str(options.get("encoding") or "auto"), opened.image_shape)
    splits = {name: _Progress(name, count, chunks) for name, (count, chunks) in opened.splits.items()}
    refused = False
    signed, times = _times_apart(identity)
    try:
        manifest = shards.write_dataset(
            dest,
            opened.classes,
            opened.image_shape,
            encoding,
            splits,
            options.get("rows_per_group"),
            source=signed,
            files=None if opened.files is None else {shards.SAMPLE_FILES: sample_files_csv(opened.files)},
            source_times=times,
        )
    except (ValueError, OSError) as exc:
        refused = not isinstance(exc, shards.StoreWriteError)  # bad input (an image that does not decode)
        raise
    finally:  # before the message saying why the import stopped, if it did
        for progress in splits.values():
            progress.end(refused)
    if opened.skipped:
        notes["skipped"] = "; ".join(f"{count} {reason}" for reason, count in opened.skipped.items())
    return {**_summary(dest, manifest), **notes, "use": use_line(dest)}


def use_line(dest: str) -> str:
    """The command that runs a pipeline on the dataset at ``dest``, shell-quoted as every printed command is.

    Why: an S3 URI's query (`?endpoint_override=HOST&scheme=http`) holds a `&`, which backgrounded a pasted command.
    """
    return f"relay run CONFIG data.name={SHARDED} " + shlex.quote(f"data.uri={dest}")


def _left_at(dest: str) -> str:
    """What an interrupted import left at ``dest``, looked at after its cleanup ran."""
    try:
        fs, root = shards.open_root(dest)
        if fs.get_file_info(root).type == pafs.FileType.NotFound:
            return f"what it wrote was removed ({dest} does not exist)"
        if shards.dataset_at(dest):
            return f"its dataset at {dest} was finished, manifest and all (`relay data info {shlex.quote(dest)}` checks it)"
        found = shards.leftovers(dest)
    except (ValueError, OSError, pa.ArrowException) as exc:
        return f"what is left at {dest} could not be checked ({shards.first_line(exc)})"
    if not found:
        return f"what it wrote was removed ({dest} is empty)"
    return f"{dest} still holds {shards.shard_files(found)} shard file(s) of it and no manifest; the next import clears them"


def _again(source: str, dest: str, options: Mapping[str, Any]) -> str:
    """The `relay data import` command line for ``source``, ``dest`` and the options given (defaults left out)."""
    flags = [
        f"--{key.replace('_', '-')} {value}"
        for key, value in options.items()
        if value is not None and not (key == "encoding" and value == "auto")
    ]
    return shlex.join(["relay", "data", "import", source, dest]) + "".join(f" {flag}" for flag in flags)


def _resolve(source: str) -> tuple[Source, Path | None]:
    """``resolve``, with a source nothing recognises as the error that lists the valid ones."""
    found = resolve(source)
    if found is None:
        path = Path(source).expanduser()
        problem = _folder_problem(path) if path.is_dir() else None
        if problem is not None:
            raise ValueError(f"SOURCE {source!r} {problem}")
        names = ", ".join(f"{name} ({s.description})" for name, s in SOURCES.items())
        raise ValueError(f"SOURCE {source!r} is neither a source name nor a folder one recognises; valid: {names}")
    return found


IMAGEFOLDER_LAYOUT = (
    "ROOT/train/<class>/<image> (test images, if any, in ROOT/test/<class>/<image> or ROOT/val/<class>/<image>)"
)


def _folder_problem(path: Path) -> str | None:
    """What is wrong with a folder no source recognises, when it looks like an image folder laid out another way;
    None: it does not.

    Why: an empty folder, and class folders without train/ (torchvision's ImageFolder root, or the train/
    folder itself), were both told only that no source recognises them, with the list of sources.
    """
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError:  # a folder it may not list: the general message, which lists the sources
        return None
    visible = [entry for entry in entries if not entry.name.startswith(".")]
    if not visible:
        held = (
            f"holds only hidden files ({', '.join(entry.name for entry in entries[:3])}), which an import skips"
            if entries
            else "is an empty folder"
        )
        return (
            f"{held}: nothing to import. Put the data in it as one of the folder sources reads it ({_folder_layouts()}), "
            "or pass the folder that holds it"
        )
    bare = _shards_without_manifest(path)
    if bare is not None:
        return bare
    classes = [entry.name for entry in visible if entry.is_dir() and _holds_image(Path(entry.path))]
    if not classes:
        return None
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    parent = path.resolve().parent
    if path.resolve().name in ("train", "test", "val") and _recognise_imagefolder(parent) is not None:
        return (
            f"is the {path.resolve().name}/ split of the image folder {parent} (class folders {shown}): "
            f"pass {parent} as SOURCE, which imports its train/ and test/ (or val/) together"
        )
    misnamed = _misnamed_splits(path, classes)
    if misnamed is not None:
        return misnamed
    return (
        f"holds class folders ({shown}) but no train/ split: an image folder is laid out as {IMAGEFOLDER_LAYOUT}. "
        f"Move the class folders into {path / 'train'}/ (and test images into {path / 'test'}/<class>/), "
        "then import it again"
    )


def _shards_without_manifest(path: Path) -> str | None:
    """What to do with a folder of shards named as Relay writes them (train/part-00000.parquet) but no manifest;
    None when its split folders hold none.

    Why: such a folder was told that no source recognises it, with the list of sources, where `relay data info`
    of it says what it lacks. Relay's names only (``shards.SHARD_NAME``), so a plug-in's folder of other Parquet
    files stays the plug-in's. A manifest is what makes shards a dataset, and CONTRACTS says how to write one.
    """
    found = []
    for split in shards.SPLIT_NAMES:
        try:
            with os.scandir(path / split) as entries:
                found += sorted(f"{split}/{e.name}" for e in entries if shards.SHARD_NAME.fullmatch(e.name))
        except OSError:
            continue
    if not found:
        return None
    if shards.holds_import_marker(str(path)):
        return (
            f"is what an unfinished import left (its {shards.IMPORT_MARKER} and shards, no {shards.MANIFEST}): re-run "
            f"the import that wrote it, which clears it and imports again, then import from {path}"
        )
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    return (
        f"holds Parquet shards ({shown}) but no {shards.MANIFEST}, the manifest that makes them a Relay dataset "
        f"(classes, image shape, each shard's rows and sha256): write it as docs/CONTRACTS.md says under "
        f"'Writing a dataset yourself' (or write the data with pipelines.datasets.shards.write_dataset, which writes "
        f"both), then import {path} again; if it is a Relay dataset whose {shards.MANIFEST} was lost or is not "
        "copied yet, put that file back"
    )


def _misnamed_splits(path: Path, folders: list[str]) -> str | None:
    """The fix for split folders under other names (ROOT/training/<class>/ for ROOT/train/<class>/): rename them;
    None when ``folders`` do not look like that.

    Why: such a folder was taken for a class folder, and the advice to move the class folders into ROOT/train/
    made ROOT/train/training/<class>/, a single class. They look like split folders when each holds class
    folders and no image of its own, and either there is one (a single class is no dataset, so it is the train
    split) or their names say which split each is (training, validation, testing); a class of nested folders
    (cat/2019/) keeps the general message.
    """
    held = {name: _class_folders(path / name) for name in folders}
    if not all(held.values()):
        return None
    targets = {name: "train" if len(folders) == 1 else _split_named(name) for name in folders}
    named = list(targets.values())
    if None in named or len(set(named)) < len(named) or "train" not in named:
        return None
    shown = "; ".join(f"{name}/ holds class folders {', '.join(held[name][:5])}" for name in folders)
    renames = " and ".join(f"{path / name}/ to {path / target}/" for name, target in targets.items() if name != target)
    return (
        f"has no train/ split, but split folders under other names ({shown}): an image folder is laid out as "
        f"{IMAGEFOLDER_LAYOUT}. Rename {renames}, then import it again"
    )


def _class_folders(folder: Path) -> list[str]:
    """The visible subfolders of ``folder`` that hold images, when it holds no image of its own; else []."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return []
    visible = [entry for entry in entries if not entry.name.startswith(".")]
    if any(entry.is_file() and entry.name.lower().endswith(shards.IMAGE_SUFFIXES) for entry in visible):
        return []
    return [entry.name for entry in visible if entry.is_dir() and _holds_image(Path(entry.path))]


def _split_named(name: str) -> str | None:
    """The split a folder's name says it is (training -> train, validation -> val, testing -> test), or None."""
    lowered = name.lower()
    for split, prefixes in (("train", ("train", "trn")), ("val", ("val",)), ("test", ("test", "tst"))):
        if lowered.startswith(prefixes):
            return split
    return None


def _folder_layouts() -> str:
    """Each folder source's layout, as the source describes itself: the empty-folder message names them all.

    Why derived: the message named the ImageFolder layout only, and a CIFAR user was told to lay out photos.
    """
    return "; ".join(f"{name}: {source.description}" for name, source in SOURCES.items() if source.recognise)


def _holds_image(folder: Path) -> bool:
    """Whether ``folder`` or a folder inside it holds a file torchvision reads as an image (hidden ones left out).

    The walk ends at the first image, and the suffixes are ``shards.IMAGE_SUFFIXES`` (torchvision's), not
    torchvision's own: `relay data import` asks this of every folder a plug-in imports too (``claims``), where
    importing torchvision (and torch with it: 8 s on a busy machine) cost far more than the look itself.
    """
    for _, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        if any(not name.startswith(".") and name.lower().endswith(shards.IMAGE_SUFFIXES) for name in files):
            return True
    return False


def _check_apart(source: Path, dest: str) -> None:
    """Refuse a local DEST inside the SOURCE folder, or SOURCE inside (or at) DEST, before anything is written.

    Shards written into the folder an import reads become part of it: DEST under train/ is a
    class folder with no image to the next import or run of SOURCE, which then fail. And a DEST
    around SOURCE is a folder the import may clear or write into.
    """
    fs, root = shards.open_root(dest)
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    target = Path(root).resolve()
    if target == source:
        where = f"SOURCE {source} is DEST itself: the shards would be written among the images they are read from"
    elif target.is_relative_to(source):
        where = (
            f"DEST {target} is inside SOURCE {source}: its shards would become part of the folder the import "
            "reads, and the next import or run of SOURCE would read them as its own"
        )
    elif source.is_relative_to(target):
        where = f"SOURCE {source} is inside DEST {target}: the import would write into the folder that holds its source"
    else:
        return
    raise ValueError(f"{where}; import into a DEST outside SOURCE, e.g. {source.parent / (source.name + '-shards')}")


def _check_options(kind: Source, folder: Path | None, options: Mapping[str, Any]) -> None:
    """Options in range and meant for this source: --image-size has data.image_size's bound, since one
    decoded image of 3 x N x N bytes per row is what a chunk and a reader hold (100000 asks for 30 GB an image)."""
    for key, (least, most) in OPTION_BOUNDS.items():
        value = options.get(key)
        if value is not None and not least <= int(value) <= (most or int(value)):
            span = f"at least {least}" if most is None else f"{least} to {most}"
            raise ValueError(f"--{key.replace('_', '-')}: expected {span}, got {value}; pass a value in that range")
    size = options.get("image_size")
    if size and "image_size" not in kind.options and int(size) != _own_side(kind):
        raise ValueError(_fixed_size(kind, folder, int(size)))


def _own_side(kind: Source) -> int | None:
    """The side of ``kind``'s square images (its own size, which --image-size may restate); None when not square,
    or not known before the source is read (a source that is no in-memory dataset: not in IMAGE_SHAPES).

    Why: `relay data import digits DEST --image-size 16` asks for the size digits are imported at, and
    was refused with advice to train them "at 16x16" another way.
    """
    shape = datasets.IMAGE_SHAPES.get(kind.name)
    if shape is None:
        return None
    height, width = shape[1:]
    return height if height == width else None


def _resizing_sources() -> str:
    """The sources that take --image-size, for the message refusing it elsewhere."""
    return ", ".join(name for name, source in SOURCES.items() if "image_size" in source.options) or "none"


def _fixed_size(kind: Source, folder: Path | None, size: int) -> str:
    """Why ``kind`` takes no --image-size, and how to train it at ``size`` after all.

    Not "resize it at training time": data.image_size is refused for a sharded dataset, which keeps the
    size it was imported at, so the way to another size is reading the source in place, where
    data.image_size applies (digits at 8 keeps its native 8x8 pixels).
    """
    if kind.name not in datasets.IMAGE_SHAPES:  # no in-memory dataset of that name to read in place
        return (
            f"--image-size: source {kind.name!r} is imported at its own size and takes no --image-size, which "
            f"resizes only the sources that take it ({_resizing_sources()}); drop --image-size"
        )
    shape = "x".join(str(side) for side in datasets.IMAGE_SHAPES[kind.name])
    in_place = f"data.name={kind.name}" + ("" if folder is None else f" data.root={shlex.quote(str(folder))}")
    return (
        f"--image-size: source {kind.name!r} is imported at its own size ({shape}) and takes no --image-size, "
        f"which resizes image folders only; drop --image-size. A sharded dataset keeps the size it was imported "
        f"at, so to train {kind.name} at {size}x{size} read it in place instead: {in_place} data.image_size={size}"
    )


def _clear_unfinished(dest: str) -> dict[str, str]:
    """Remove what an unfinished import left at ``dest`` (a note saying so); refuse a destination holding anything else.

    Only a destination the import's marker vouches for is cleared (``shards.leftovers``): Parquet
    files under train/ without it may be the user's own, or a dataset whose manifest was lost.
    """
    found = shards.leftovers(dest)
    if found is None:
        held = shards.contents(dest) or "files"
        why = (  # a killed import's marker beside files no import writes vouches for none of them
            f"besides an unfinished import's {shards.IMPORT_MARKER} it holds files an import never writes"
            if shards.holds_import_marker(dest)
            else f"no {shards.MANIFEST}, and no {shards.IMPORT_MARKER} of an unfinished import"
        )
        raise ValueError(
            f"{dest} is not empty and holds no Relay dataset (it holds {held}; {why}): the import deletes only "
            f"what it can tell it wrote, so it leaves these alone; import into a new or empty destination"
        )
    if not found:
        return {}
    files = shards.shard_files(found)
    shards.clear_leftovers(dest, found)
    folders = sum(info.type == pafs.FileType.Directory for info in found)
    left = f"{files} shard file(s) and {folders} folder(s), no manifest"
    return {"cleared": f"{dest} held what an unfinished import left ({left}): removed it and imported again"}


def _identity(kind: Source, folder: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two imports the same import: the source, its folder (and a fingerprint of its files,
    for a folder that can change), and the options that change the bytes."""
    chosen = {key: options[key] for key in ("encoding", "rows_per_group", *kind.options) if options.get(key)}
    identity = {"name": kind.name, "location": None if folder is None else str(folder), "options": chosen}
    if kind.files is not None and folder is not None:
        identity["files"] = _fingerprint(kind, folder)
    return identity


def _fingerprint(kind: Source, folder: Path) -> dict[str, Any]:
    """``kind.files(folder)``, refused (ValueError, before anything is written) unless ``checks.files_fingerprint``
    made it: a repeated import compares it field by field, and a source's own dict crashed that comparison."""
    fingerprint = kind.files(folder)
    problem = checks.fingerprint_problem(fingerprint)
    if problem:
        raise ValueError(
            f"source {kind.name!r}: its files({folder}) returned {problem}; a source's files(folder) must return "
            "pipelines.datasets.checks.files_fingerprint(folder, [(split, path), ...]) over the files an import "
            "reads, so a repeated import can tell whether they changed. This is a bug in the source, not in the "
            "data: fix its files function"
        )
    return fingerprint


def _times_apart(identity: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The source's identity without its files' times, and those times: the manifest keeps them out of the digest
    (``shards.DatasetManifest``), so the same bytes imported again are the same dataset."""
    files = identity.get("files")
    if not files or "times" not in files:
        return dict(identity), ""
    return {**identity, "files": {key: value for key, value in files.items() if key != "times"}}, files["times"]


def _imported_files(manifest: shards.DatasetManifest) -> dict[str, Any] | None:
    """The fingerprint of the files the import of ``manifest`` read, its times included, wherever it recorded them:
    ``source_times``, or (a manifest written before that field) inside the source."""
    files = manifest.source.get("files")
    if not files or not manifest.source_times:
        return files
    return {**files, "times": manifest.source_times}


def _already_there(dest: str, kind: Source, identity: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A repeated import is a no-op only when the destination and the source are still what that import made.

    Checked cheaply, before anything is read or written: the manifest against its digest, every
    shard there at its recorded size, the same source and options (compared as resolved: --encoding
    auto that chose raw equals raw), and for a folder source the same files. Anything else is
    refused with what differs: writing over a dataset could break the runs that use it.
    """
    retry = f"remove {dest} (or import into a new path) to re-import"
    manifest = _manifest_there(dest, retry)
    differences = _differences(manifest, kind, identity, options)
    if differences:
        raise ValueError(
            f"{dest} already holds a different dataset (digest {manifest.digest[:16]}): {'; '.join(differences)}; "
            "import into a new destination, or delete that one first"
        )
    changed = checks.changed_shards(dest, manifest)
    if changed:
        raise ValueError(f"{dest} changed after its import: {', '.join(changed)}; {retry}")
    imported = _imported_files(manifest)
    _check_recorded(imported, identity, dest, retry)
    source_change = checks.files_change(imported, identity.get("files"))
    if source_change:
        raise ValueError(
            f"the source {identity['location']} changed since it was imported into {dest}: {source_change}; {retry}"
        )
    note = "already imported from this source: nothing written" + checks.unchecked_files(
        imported, identity.get("files")
    )
    return {**_summary(dest, manifest), "note": note}


def _check_recorded(imported: Any, identity: Mapping[str, Any], dest: str, retry: str) -> None:
    """Refuse a dataset whose record of its source's files no ``checks.files_fingerprint`` made, which a source's
    ``files`` returning its own dict left before ``_fingerprint`` refused it: compared with the folder's files now,
    it ended the repeated import in a KeyError traceback."""
    problem = checks.fingerprint_problem(imported, times=False) if imported and identity.get("files") else None
    if problem:
        raise ValueError(
            f"{dest} was imported from {identity['location']} by a source whose files(folder) returned {problem}, "
            f"so whether that folder changed since cannot be told; {retry}"
        )


def _differences(
    manifest: shards.DatasetManifest, kind: Source, identity: Mapping[str, Any], options: Mapping[str, Any]
) -> list[str]:
    """What makes this import another dataset than the one at the destination, one phrase each (old vs new).

    Options are compared as the import resolves them against the stored image shape, so leaving
    an option at its default and passing the value the default chose are the same import. Another
    --image-size is said alone: the encoding and row group that follow from it are no news.
    """
    old = manifest.source
    found = []
    if old.get("name") != identity["name"]:
        found.append(f"source: imported from {old.get('name')!r}, this import reads {identity['name']!r}")
    elif old.get("location") != identity["location"]:
        found.append(f"source folder: imported from {old.get('location')}, this import reads {identity['location']}")
    shape = manifest.image_shape
    if "image_size" in kind.options:
        size = int(options.get("image_size") or datasets.IMAGEFOLDER_SIZE)
        if tuple(shape[1:]) != (size, size):  # the defaults of the other options follow the size: not theirs
            return [*found, f"--image-size: imported at {shape[1]}x{shape[2]}, this import asks for {size}x{size}"]
    asked = str(options.get("encoding") or "auto")
    if codec.choose_encoding(asked, shape) != manifest.encoding:
        found.append(f"--encoding: stored {manifest.encoding}, this import asks for {asked}")
    rows = int(options.get("rows_per_group") or shards.rows_per_group_for(shape))
    if rows != manifest.rows_per_group:
        found.append(f"--rows-per-group: stored {manifest.rows_per_group}, this import asks for {rows}")
    return found


class _Progress:
    """A split's chunks, as they are read, with a progress bar over its rows that the writer closes.

    Why the writer closes it: the last row group is written when the split's writer closes, after
    the chunks ran out. A bar that closed with its chunks timed the read alone, and digits read
    from memory in one chunk showed 20 million img/s.

    Why its last line is printed only when the import ends (``end``): an import refused for a bad
    image prints its message alone, with no bar of a split before it or of the split it stopped in.
    """

    def __init__(self, split: str, count: int, chunks: Chunks) -> None:
        self.split, self.count, self.chunks = split, count, chunks
        self.bar: tqdm | None = None
        self.last_line: str | None = None  # the bar as the writer closed it

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.bar = tqdm(total=self.count, desc=f"import {self.split}", unit="img", mininterval=1.0, smoothing=0)
        for images, labels in self.chunks():
            yield images, labels
            self.bar.update(len(images))

    def close(self) -> None:
        """Keep the bar's last line, its rate the split's rows over its read and write (``smoothing=0``), and
        erase the bar until the import ends."""
        if self.bar is not None and self.last_line is None:
            self.last_line = str(self.bar)
            self.bar.leave = False
            self.bar.close()

    def end(self, refused: bool) -> None:
        """The import is over: print the split's last line, or end a bar cut off (Ctrl-C, a failing store) where
        it stopped; a refused import (bad input) erases the bar and prints nothing."""
        if refused:
            if self.bar is not None and not self.bar.disable:  # still drawn (tqdm disables a bar it closes)
                self.bar.leave = False
                self.bar.close()
                _end_erased_line(self.bar)
        elif self.last_line is not None:
            tqdm.write(self.last_line, file=sys.stderr)
        elif self.bar is not None:
            self.bar.close()


def _end_erased_line(bar: tqdm) -> None:
    """End the line of a bar closed with ``leave=False`` when its stream is no terminal (a pipe, a log file).

    Why: tqdm erases a bar with carriage returns, which only a terminal obeys; elsewhere the bar stays and the
    message after it (why the import was refused) ran on in the same line, `import train: 0%| ...relay: ...`.
    """
    stream = getattr(bar, "fp", None)
    isatty = getattr(stream, "isatty", None)
    if stream is not None and not (callable(isatty) and isatty()):
        stream.write("\n")
        stream.flush()


def describe(uri: str, verify: bool) -> dict[str, Any]:
    """What ``relay data info`` prints; ``verify`` also hashes every shard and decodes every image."""
    manifest = shards.read_manifest(uri)
    for split in manifest.splits:
        checks.read_labels(uri, manifest, split)  # sizes, schemas, sample ids, label range
    summary = _summary(uri, manifest)
    if verify:
        total = sum(shard.bytes for split in manifest.splits.values() for shard in split.shards)
        with _verify_bar("sha256", total, "B") as bar:
            checks.verify_digests(uri, manifest, hashed=bar.update)
        _verify_written_files(uri, manifest)
        _decode_every_image(uri, manifest)
        summary["verified"] = "every shard's sha256 matches and every image decodes"
    return summary


def _decode_every_image(uri: str, manifest: shards.DatasetManifest) -> None:
    """Read every row group of every split as a run does (``ShardRows``): an image that does not decode is refused."""
    from pipelines.datasets.rows import ShardRows

    with _verify_bar("images", sum(info.count for info in manifest.splits.values()), "img") as bar:
        for split, info in manifest.splits.items():
            rows = ShardRows(uri, manifest, split)
            for start in range(0, info.count, manifest.rows_per_group):
                ids = np.arange(start, min(start + manifest.rows_per_group, info.count))
                rows.read(ids)
                bar.update(len(ids))


def _verify_bar(what: str, total: int, unit: str) -> tqdm:
    """The progress bar of one pass of `relay data info --verify`, as the import draws its bars (one refresh a
    second, the rate over the whole pass), on a terminal only and erased when done, so the summary is what stays.

    Why: --verify of 2M rows printed nothing for 18 s. A pipe or a log gets no bar: it would keep every refresh.
    """
    return tqdm(
        total=total,
        desc=f"verify {what}",
        unit=unit,
        unit_scale=unit == "B",
        mininterval=1.0,
        smoothing=0,
        leave=False,
        disable=None,
    )


def _written_files(uri: str, manifest: shards.DatasetManifest) -> dict[str, str]:
    """The summary's line for the files an import wrote beside the shards: where to find each id's file."""
    written = manifest.source.get("files_written", {})
    fs, root = shards.open_root(uri)
    lines = [
        f"{shards.child_uri(uri, name)}: each sample id's image file and class"
        if fs.get_file_info(f"{root}/{name}").type == pafs.FileType.File
        else _missing_written_file(uri, name)
        for name in written
    ]
    return {"files": "; ".join(lines)} if lines else {}


def _missing_written_file(uri: str, name: str) -> str:
    """What `relay data info` says of a file the import wrote beside the shards that is gone (the shards still serve)."""
    return (
        f"{shards.child_uri(uri, name)}: missing (the manifest lists it: each sample id's image file and class); copy it back "
        "from the dataset's original place, or re-import into a new path"
    )


def _verify_written_files(uri: str, manifest: shards.DatasetManifest) -> None:
    """The files an import wrote beside the shards (``shards.SAMPLE_FILES``) against the sha256 the manifest records."""
    fs, root = shards.open_root(uri)
    for name, sha256 in manifest.source.get("files_written", {}).items():
        try:
            with fs.open_input_stream(f"{root}/{name}") as stream:
                found = hashlib.sha256(stream.read()).hexdigest()
        except FileNotFoundError as exc:
            raise shards.DatasetError(_missing_written_file(uri, name)) from exc
        except (OSError, pa.ArrowException) as exc:
            raise shards.DatasetError(
                f"{shards.child_uri(uri, name)}: could not read it ({shards.one_line(exc)})"
            ) from exc
        if found != sha256:
            raise shards.DatasetError(
                f"{shards.child_uri(uri, name)}: sha256 {found[:16]} does not match the manifest's {sha256[:16]}: it changed after "
                "the import; re-import the dataset to write it again"
            )


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
        **_written_files(uri, manifest),
    }
