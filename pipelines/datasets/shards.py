"""The sharded dataset format: Parquet shards and one manifest, on any pyarrow URI (a path, a mount, s3://).

Layout (docs/CONTRACTS.md, Shard format)::

    DEST/dataset.json                  the manifest: classes, image shape, encoding, splits, digests
    DEST/train/part-00000.parquet ...  sample_id int64, label int32 (null: unknown), image
    DEST/test/part-00000.parquet ...   a split of its own when the source has one
    DEST/samples.csv                   an image folder's import: each sample id's file and class
    DEST/import-in-progress.json       only while an import writes (or after one was killed)

``sample_id`` is the row's position in its split (0..count-1, in shard order), which is what the
split table and the loops index by, so a sample id maps to (shard, row group, row) by arithmetic
on the manifest's row counts, without reading an index. Shards are cut into row groups of
``rows_per_group`` rows (about 1 MB): the unit a reader fetches. The manifest is written last and
carries a sha256 per shard plus a dataset digest over everything else it says, so "the manifest
exists and its digest matches" means the import finished and nobody edited it since (the
shards themselves are checked against it by ``checks``).

pyarrow and NumPy only (PIL through ``codec`` for PNG): the driver checks a dataset before a run
without torch. Every problem is a DatasetError (a ValueError: a stage that meets one fails at once,
it is not retried) whose message names the file, and the row where there is one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.datasets import codec

FORMAT = "relay-shards/1"
MANIFEST = "dataset.json"
IMPORT_MARKER = "import-in-progress.json"  # written before any shard, removed after the manifest: see write_dataset
WRITTEN_BY = "relay data import"
SAMPLE_FILES = "samples.csv"  # an image folder's import: split, sample_id, path, class (imports.sample_files_csv)
TARGET_GROUP_BYTES = 1 << 20
GROUPS_PER_SHARD = 64
SPLIT_NAMES = ("train", "test")  # the splits sources have; an unfinished import leaves only these folders
SHARD_NAME = re.compile(r"part-\d{5}\.parquet")  # SplitWriter's shard names
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
_CLASSES_LOOKED_AT = 3  # class folders listed to tell an image folder: a few listings, not the whole tree


REIMPORT = "re-import the dataset (into a new path, or remove this one first: an import does not write over one)"


def read_fix(exc: BaseException, root: str) -> str:
    """How to mend a dataset file that could not be read: access, when this user may not read it, else a re-import.

    Why: a dataset of another user (chmod 700, a file left 600 by an import run as root) was told to
    be imported again, which needs the source and would not help; the files were whole.
    """
    if isinstance(exc, PermissionError):
        return f"this user may not read it; make the dataset readable by the user running Relay (e.g. `chmod -R a+rX {root}`)"
    return REIMPORT


class DatasetError(ValueError):
    """A dataset that is missing or not what its manifest says; the message names the file and row."""


class ManifestError(DatasetError):
    """A manifest that is there but does not check out; ``reason`` says why without the fix, which
    depends on who asks (a run: re-import; an import over it: remove the destination first)."""

    def __init__(self, path: str, reason: str, fix: str = REIMPORT) -> None:
        super().__init__(f"{path}: {reason}; {fix}")
        self.reason = reason


class StoreWriteError(OSError):
    """Writing a dataset's shards or manifest to its storage failed: the storage's fault (it stopped
    answering, refused, or is full), not the input's. An OSError, as the storage's error was.

    ``kept``: whether files the import wrote may still be there, because its cleanup could not
    remove them either (a store that stopped answering): set by ``write_dataset``.
    """

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(f"{path}: could not write ({first_line(cause)})")
        self.kept = False


@dataclass(frozen=True)
class Shard:
    """One Parquet file of a split: its path under the dataset root, rows, size and sha256."""

    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SplitShards:
    """The shards of one split, in sample-id order; ``unlabeled`` counts rows whose label is null."""

    count: int
    unlabeled: int
    shards: tuple[Shard, ...]

    def starts(self) -> np.ndarray:
        """The first sample id of every shard (int64), plus ``count`` at the end."""
        return np.concatenate([[0], np.cumsum([s.rows for s in self.shards])]).astype(np.int64)


@dataclass(frozen=True)
class DatasetManifest:
    """What ``dataset.json`` says. ``digest`` is the sha256 of every other field (``body_digest``) but ``source_times``.

    ``source_times`` is the sha256 over the times of a folder source's files (``checks.files_fingerprint``), which
    a repeated import compares to find an edit in place. It is kept out of the digest, the dataset's identity
    (what stages cache on and `data.digest` pins): a source whose files only got new times (`chmod`, `touch`, a
    hard link, `cp -p`), imported again, gave byte-identical shards a new digest, and every cached stage ran
    again. A manifest written before it existed holds the times in ``source["files"]`` and its digest covers
    them, so it verifies as it did; an older Relay reads a newer manifest too, as it ignores the field.
    """

    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    encoding: str
    rows_per_group: int
    splits: Mapping[str, SplitShards]
    source: Mapping[str, Any] = field(default_factory=dict)
    digest: str = ""
    source_times: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_bytes(self) -> int:
        """Bytes of one decoded image: what memory budgets are divided by."""
        return int(np.prod(self.image_shape))

    def body(self) -> dict[str, Any]:
        """Every field but the digest and ``source_times``, as JSON-able data (what the digest hashes)."""
        data = asdict(self)
        data.pop("digest")
        data.pop("source_times")
        return {"format": FORMAT, **data}


def body_digest(body: Mapping[str, Any]) -> str:
    """sha256 of the manifest's body in canonical JSON: any edit to it (or to a shard's digest) changes it."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def shard_schema(encoding: str, shape: Sequence[int]) -> pa.Schema:
    """The schema every shard of a dataset has: the image column's type follows the encoding."""
    return pa.schema(
        [
            pa.field("sample_id", pa.int64(), nullable=False),
            pa.field("label", pa.int32(), nullable=True),
            pa.field("image", codec.image_type(encoding, shape), nullable=False),
        ]
    )


def rows_per_group_for(shape: Sequence[int]) -> int:
    """Rows of about TARGET_GROUP_BYTES decoded: the unit a reader fetches (16..4096 rows)."""
    return int(min(4096, max(16, TARGET_GROUP_BYTES // max(1, int(np.prod(shape))))))


def open_root(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) of a dataset URI: a local path, or any URI pyarrow knows (s3://...).

    Local paths are made absolute, because loader workers and Ray workers reopen the URI
    elsewhere. Local reads are plain reads, not memory maps: a mapped shard would count in a
    reader's resident memory for as long as it stays open.
    """
    if "://" in uri:
        try:
            fs, root = pafs.FileSystem.from_uri(uri)
        except OSError as exc:  # it parsed, then asking the storage failed (S3 resolves the bucket's region here)
            raise DatasetError(unreachable(uri, exc)) from exc
        except (pa.ArrowException, ValueError) as exc:
            raise DatasetError(
                f"{uri}: not a filesystem URI pyarrow can open ({first_line(exc)}); use a local path or a URI such "
                "as s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
            ) from exc
        return fs, root.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def child_uri(uri: str, name: str) -> str:
    """The URI of ``name`` under the dataset at ``uri``: the path before a query string, if there is one.

    Why: ``s3://b/ds?endpoint_override=HOST&scheme=http`` + ``/samples.csv`` read as a query ending in a path.
    """
    base, mark, query = uri.partition("?") if "://" in uri else (uri, "", "")
    return f"{base.rstrip('/')}/{name}{mark}{query}"


def first_line(exc: BaseException) -> str:
    """An error's first line: pyarrow's HDFS errors append one line per JVM path it tried (about 80)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An error's text on one line, without object reprs: Parquet's errors span lines ("Couldn't deserialize
    thrift: ...\nDeserializing page header failed.\n"), PIL's name the buffer it read (<_io.BytesIO object at
    0x...>) or the unprintable byte it met, and either would break a message that is one line a problem."""
    lines = ("".join(char for char in line if char.isprintable()).strip() for line in str(exc).splitlines())
    text = " ".join(line for line in lines if line)
    text = _OBJECT_REPR.sub("", text).strip()
    return (text[: limit - 3] + "...") if len(text) > limit else text or type(exc).__name__


def unreachable(uri: str, exc: OSError) -> str:
    """The message for storage that parses but does not answer from here: what to check, by kind of storage."""
    if "libjvm" in str(exc) or "libhdfs" in str(exc):
        return (
            f"{uri}: pyarrow's HDFS client cannot start on this machine ({first_line(exc)}); it needs Java and "
            "Hadoop's libhdfs: set JAVA_HOME, HADOOP_HOME and CLASSPATH=$(hadoop classpath --glob)"
        )
    return (
        f"{uri}: cannot reach this storage from here ({first_line(exc)}); check the network, the endpoint "
        "(AWS_ENDPOINT_URL for an S3-compatible server) and the credentials"
    )


# --- the manifest ------------------------------------------------------------------------------


def read_manifest(uri: str) -> DatasetManifest:
    """The dataset at ``uri``, its manifest digest checked; DatasetError says what is missing or wrong."""
    fs, root = open_root(uri)
    path = f"{root}/{MANIFEST}"
    try:
        with fs.open_input_stream(path) as stream:
            raw = stream.read()
    except FileNotFoundError:
        raise DatasetError(_no_manifest(uri, fs, root)) from None
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, OSError) and not isinstance(fs, pafs.LocalFileSystem):
            raise DatasetError(unreachable(uri, exc)) from exc
        if fs.get_file_info(root).type == pafs.FileType.File:
            raise DatasetError(
                f"{uri} is a file, not a dataset folder; pass the folder `relay data import` wrote"
            ) from exc
        raise DatasetError(f"{path}: could not read the manifest ({first_line(exc)}); {read_fix(exc, root)}") from exc
    manifest = _manifest_from(path, raw)
    if not any(split.shards for split in manifest.splits.values()):
        raise ManifestError(path, "the manifest lists no shards")
    return manifest


SOURCES_READ = "digits, synthetic, a CIFAR-10/100 folder, or an image folder with train/<class>/<image>"


def _no_manifest(uri: str, fs: pafs.FileSystem, root: str) -> str:
    """Why ``uri`` holds no dataset, with the advice that works there.

    Importing into ``uri`` is advised only where the import would do it: an empty or missing
    destination, or one holding what an unfinished import left (its marker names it). Anything
    else there (the user's own Parquet, a Relay dataset whose manifest was lost, an image folder)
    the import refuses to touch, so the advice is a new destination. A local path that does not exist is
    said so first: a mistyped one was told only that it held no shards, and to import a dataset there.
    """
    if leftovers(uri):
        return unfinished_import_advice(uri)
    if _missing_locally(fs, root):
        return (
            f"{uri} does not exist (no such path): check the path, or make a dataset there with "
            f"`relay data import SOURCE {uri}` (SOURCE: {SOURCES_READ})"
        )
    if _image_folder_at(fs, root):
        return (
            f"{uri}: no shards here (no {MANIFEST}), but an image folder (train/<class>/ images): read it as one "
            f"with `data.name=imagefolder data.root={uri}`, or import it into a new destination with "
            f"`relay data import {uri} NEW_DEST`"
        )
    held = contents(uri)
    if held:
        return (
            f"{uri}: no Relay dataset here (no {MANIFEST}; it holds {held}); Relay reads shards with a {MANIFEST}, as "
            f"`relay data import` writes them (only into a new or empty folder): import the data's source into a new "
            f"destination with `relay data import SOURCE NEW_DEST` (SOURCE: {SOURCES_READ}) and set data.uri=NEW_DEST"
            f"; shards you wrote yourself need the {MANIFEST} docs/CONTRACTS.md describes ('Writing a dataset "
            f"yourself'); if {uri} is a Relay dataset whose {MANIFEST} was lost or is not copied yet, put that file back"
        )
    return f"{uri}: no shards here (no {MANIFEST}); create the dataset with `relay data import SOURCE {uri}` (SOURCE: {SOURCES_READ})"


def _missing_locally(fs: pafs.FileSystem, root: str) -> bool:
    """Whether ``root`` is a local path where nothing is (a prefix of a bucket may hold objects later: not asked)."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return False
    try:
        return fs.get_file_info(root).type == pafs.FileType.NotFound
    except (OSError, pa.ArrowException):
        return False


def unfinished_import_advice(uri: str) -> str:
    """What to do with what an unfinished import left at ``uri`` (``leftovers`` found it): re-run that import.

    Said the same wherever such a folder is read (as a dataset, as an image folder): read as
    anything else it only fails again, and the import is what clears it.
    """
    return (
        f"{uri}: an unfinished import (its {IMPORT_MARKER} but no {MANIFEST}: it was interrupted or failed); "
        f"re-run the import (`relay data import SOURCE {uri}`): it clears what it wrote and imports again"
    )


def contents(uri: str, shown: int = 3) -> str:
    """A few of the files under ``uri`` (relative paths, "..." when there are more): what a refusal names.

    A walk that stops at ``shown + 1`` files, so a large folder (or bucket prefix) costs a few
    listings. Empty when there is nothing, or nothing that can be listed (the caller's other
    checks name that).
    """
    fs, root = open_root(uri)
    files: list[str] = []
    folders = [root]
    try:
        while folders and len(files) <= shown:
            listed = sorted(fs.get_file_info(pafs.FileSelector(folders.pop(0), allow_not_found=True)), key=_path)
            files.extend(info.path[len(root) + 1 :] for info in listed if info.type == pafs.FileType.File)
            folders.extend(info.path for info in listed if info.type == pafs.FileType.Directory)
    except (OSError, pa.ArrowException):
        return ""
    return ", ".join(files[:shown]) + (", ..." if len(files) > shown else "")


def _path(info: pafs.FileInfo) -> str:
    return info.path


def _image_folder_at(fs: pafs.FileSystem, root: str) -> bool:
    """Whether a local ``root`` looks like an image folder: one of its first train/<class>/ folders holds an image.

    Said when a dataset URI names one (`data.uri` where `data.root` was meant), since the usual
    advice, importing into that URI, is refused there: it is not empty. A few listings, on the
    error path only; local only, as the image folder loader reads local folders.
    """
    if not isinstance(fs, pafs.LocalFileSystem):
        return False
    try:
        listed = fs.get_file_info(pafs.FileSelector(f"{root}/train", allow_not_found=True))
        classes = sorted(
            i.path for i in listed if i.type == pafs.FileType.Directory and not i.base_name.startswith(".")
        )
        for folder in classes[:_CLASSES_LOOKED_AT]:
            for info in fs.get_file_info(pafs.FileSelector(folder)):
                if info.type == pafs.FileType.File and info.base_name.lower().endswith(IMAGE_SUFFIXES):
                    return True
    except (OSError, pa.ArrowException):
        return False
    return False


def _manifest_from(path: str, raw: bytes) -> DatasetManifest:
    """Parse and check a manifest: format, fields, and the digest over its body."""
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ManifestError(path, f"expected format {FORMAT!r}, got {data.get('format')!r}")
        splits = {
            name: SplitShards(int(s["count"]), int(s["unlabeled"]), tuple(Shard(**shard) for shard in s["shards"]))
            for name, s in data["splits"].items()
        }
        manifest = DatasetManifest(
            classes=tuple(str(c) for c in data["classes"]),
            image_shape=tuple(int(v) for v in data["image_shape"]),
            encoding=str(data["encoding"]),
            rows_per_group=int(data["rows_per_group"]),
            splits=splits,
            source=dict(data.get("source", {})),
            digest=str(data["digest"]),
            source_times=str(data.get("source_times", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise ManifestError(path, f"not a readable manifest ({type(exc).__name__}: {exc})") from exc
    expected = body_digest(manifest.body())
    if manifest.digest != expected:
        raise ManifestError(
            path,
            f"the manifest's digest {manifest.digest[:16]} does not match its content ({expected[:16]}): "
            "it was edited after the import",
        )
    return manifest


def write_manifest(uri: str, manifest: DatasetManifest) -> DatasetManifest:
    """Write ``dataset.json`` (last, after every shard) with its digest; returns the manifest with it."""
    fs, root = open_root(uri)
    sealed = DatasetManifest(**{**manifest.__dict__, "digest": body_digest(manifest.body())})
    times = {"source_times": sealed.source_times} if sealed.source_times else {}
    payload = json.dumps({**sealed.body(), **times, "digest": sealed.digest}, indent=1).encode()
    try:
        with fs.open_output_stream(f"{root}/{MANIFEST}") as stream:
            stream.write(payload)
    except (OSError, pa.ArrowException) as exc:
        raise StoreWriteError(f"{root}/{MANIFEST}", exc) from exc
    return sealed


# --- writing, shard by shard ---------------------------------------------------------------------


class SplitWriter:
    """Append images and labels to one split; holds at most one shard's encoded bytes.

    Rows arrive in chunks of any size; each full row group is encoded and written into the
    current shard (Parquet in a memory buffer), and each full shard is hashed and written out, so
    a split of any size is imported with the memory of one shard (GROUPS_PER_SHARD row groups).
    """

    def __init__(
        self,
        uri: str,
        split: str,
        encoding: str,
        shape: Sequence[int],
        rows_per_group: int,
        groups_per_shard: int = GROUPS_PER_SHARD,
        num_classes: int | None = None,
    ) -> None:
        self._fs, self._root = open_root(uri)
        self.num_classes = num_classes
        self.split, self.encoding, self.shape = split, encoding, tuple(int(v) for v in shape)
        self.schema = shard_schema(encoding, self.shape)
        self.rows_per_group = rows_per_group
        self.rows_per_shard = rows_per_group * groups_per_shard
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._buffer: pa.BufferOutputStream | None = None
        self._writer: pq.ParquetWriter | None = None
        self._shard_rows = 0
        self.count = self.unlabeled = 0
        self.shards: list[Shard] = []
        self.written: list[str] = []  # absolute paths, so a failed import can remove them
        self.folder = f"{self._root}/{split}"

    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Append uint8 ``[n, C, H, W]`` images with int labels (-1: unknown)."""
        if tuple(images.shape[1:]) != self.shape or images.dtype != np.uint8:
            raise DatasetError(
                f"{self.split}: expected uint8 images {self.shape}, got {images.dtype} {tuple(images.shape[1:])}"
            )
        labels = np.asarray(labels, dtype=np.int64)
        if self.num_classes is not None:
            self._check_labels(labels)
        self._pending.append((images, labels))
        self._pending_rows += len(images)
        while self._pending_rows >= self.rows_per_group:
            self._write_group(self.rows_per_group)

    def _check_labels(self, labels: np.ndarray) -> None:
        """Refuse a label outside 0..num_classes-1 (-1 marks an unknown one), naming the split, row and class count.

        Why here: every reader (the preflight, `relay data info --verify`) refuses such a label, so a
        dataset written with one was written only to be refused later, far from the code that made it.
        """
        bad = np.flatnonzero((labels < -1) | (labels >= self.num_classes))
        if bad.size:
            row = self.count + self._pending_rows + int(bad[0])
            raise DatasetError(
                f"{self.split} row {row}: label {int(labels[bad[0]])} is outside 0..{self.num_classes - 1} "
                f"(the dataset has {self.num_classes} classes; -1 marks an unknown label); fix the labels or the "
                "class list: nothing was written"
            )

    def close(self) -> SplitShards:
        """Write what is left; the split's shards for the manifest."""
        if self._pending_rows:
            self._write_group(self._pending_rows)
        self._finish_shard()
        return SplitShards(self.count, self.unlabeled, tuple(self.shards))

    def _write_group(self, rows: int) -> None:
        images = np.concatenate([i for i, _ in self._pending])
        labels = np.concatenate([lab for _, lab in self._pending])
        rest = (images[rows:], labels[rows:])
        self._pending, self._pending_rows = ([rest] if len(rest[0]) else []), len(rest[0])
        if self._writer is None:
            self._buffer = pa.BufferOutputStream()
            self._writer = pq.ParquetWriter(self._buffer, self.schema, compression="none", write_statistics=False)
        ids = np.arange(self.count, self.count + rows, dtype=np.int64)
        label_column = pa.array(labels[:rows], pa.int32(), mask=labels[:rows] < 0)
        batch = pa.record_batch([pa.array(ids), label_column, codec.encode(images[:rows], self.encoding)], self.schema)
        self._writer.write_batch(batch, row_group_size=rows)
        self.count += rows
        self.unlabeled += int(np.sum(labels[:rows] < 0))
        self._shard_rows += rows
        if self._shard_rows >= self.rows_per_shard:
            self._finish_shard()

    def _finish_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        data = self._buffer.getvalue()
        path = f"{self.split}/part-{len(self.shards):05d}.parquet"
        self.written.append(f"{self._root}/{path}")
        try:
            self._fs.create_dir(self.folder, recursive=True)
            with self._fs.open_output_stream(f"{self._root}/{path}") as stream:
                stream.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise StoreWriteError(f"{self._root}/{path}", exc) from exc
        self.shards.append(Shard(path, self._shard_rows, data.size, hashlib.sha256(data).hexdigest()))
        self._writer = self._buffer = None
        self._shard_rows = 0


def write_dataset(
    uri: str,
    classes: Sequence[str],
    image_shape: Sequence[int],
    encoding: str,
    splits: Mapping[str, Iterable[tuple[np.ndarray, np.ndarray]]],
    rows_per_group: int | None = None,
    groups_per_shard: int = GROUPS_PER_SHARD,
    source: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
    source_times: str = "",
) -> DatasetManifest:
    """Write each split from its chunks of (uint8 images, labels; -1 unknown), then the manifest, last.

    Memory: one chunk and one shard. Whatever goes wrong (a chunk that fails to load, storage,
    Ctrl-C), the shards written so far and the split folders are removed, so a failed import
    leaves neither a manifest nor half a dataset, nor an empty folder that would make the next
    import's destination look foreign. A killed process cannot clean up, so the import first
    writes IMPORT_MARKER, naming itself, and removes it only after the manifest: the marker is
    what lets the next import (``leftovers``) tell its own unfinished files from anybody else's
    Parquet, which it never deletes. A label outside 0..len(classes)-1 (other than -1) is a DatasetError
    naming its split and row, and nothing is left written. Chunks with a ``close`` method are closed once their split is written.
    ``files`` (name -> bytes, at the root: SAMPLE_FILES) are written after the shards and before the
    manifest, which records each one's sha256 in its source, so they are part of what the digest covers.
    ``source_times`` goes into the manifest outside the digest (``DatasetManifest``).
    """
    shape = tuple(int(v) for v in image_shape)
    group = rows_per_group or rows_per_group_for(shape)
    written: list[str] = []
    fs, root = open_root(uri)
    folders = [] if fs.get_file_info(root).type != pafs.FileType.NotFound else [root]  # removed last, if made here
    marker = f"{root}/{IMPORT_MARKER}"
    try:
        write_marker(uri)
        done = {}
        for name, chunks in splits.items():
            writer = SplitWriter(uri, name, encoding, shape, group, groups_per_shard, len(classes))
            try:
                for images, labels in chunks:
                    writer.write(images, labels)
                done[name] = writer.close()
                if callable(close := getattr(chunks, "close", None)):  # a progress bar: its split is written
                    close()
            finally:
                written.extend(writer.written)
                folders.insert(0, writer.folder)
        digests = _write_files(fs, root, files or {}, written)
        described = {**(source or {}), **({"files_written": digests} if digests else {})}
        manifest = DatasetManifest(
            tuple(str(c) for c in classes), shape, encoding, group, done, described, source_times=source_times
        )
        sealed = write_manifest(uri, manifest)
    except BaseException as exc:
        kept = remove(uri, [*written, marker], folders)  # the marker last: it stays while a shard it covers does
        if isinstance(exc, StoreWriteError):
            exc.kept = bool(kept)
        raise
    remove(uri, [marker])  # a marker left beside the manifest is harmless: the dataset reads as finished
    return sealed


def _write_files(fs: pafs.FileSystem, root: str, files: Mapping[str, bytes], written: list[str]) -> dict[str, str]:
    """Write ``files`` at ``root`` (each path added to ``written`` first, for the cleanup); name -> sha256."""
    digests = {}
    for name, payload in files.items():
        written.append(f"{root}/{name}")
        try:
            with fs.open_output_stream(f"{root}/{name}") as stream:
                stream.write(payload)
        except (OSError, pa.ArrowException) as exc:
            raise StoreWriteError(f"{root}/{name}", exc) from exc
        digests[name] = hashlib.sha256(payload).hexdigest()
    return digests


def write_marker(uri: str) -> None:
    """IMPORT_MARKER at ``uri``, before any shard: the proof that what follows there is this import's."""
    fs, root = open_root(uri)
    note = f"{WRITTEN_BY} is writing a dataset here; it writes {MANIFEST} when it finishes, then removes this file"
    try:
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(f"{root}/{IMPORT_MARKER}") as stream:
            stream.write(json.dumps({"format": FORMAT, "written_by": WRITTEN_BY, "note": note}).encode())
    except (OSError, pa.ArrowException) as exc:
        raise StoreWriteError(f"{root}/{IMPORT_MARKER}", exc) from exc


def _is_marker(fs: pafs.FileSystem, path: str) -> bool:
    """Whether ``path`` is a marker an import wrote (its JSON names the writer), not a file that shares its name."""
    try:
        with fs.open_input_stream(path) as stream:
            data = json.loads(stream.read(4096))
    except (OSError, pa.ArrowException, ValueError):
        return False
    return isinstance(data, dict) and data.get("written_by") == WRITTEN_BY and data.get("format") == FORMAT


def holds_import_marker(uri: str) -> bool:
    """Whether ``uri`` holds the marker an import writes before its first shard (and removes after the manifest)."""
    fs, root = open_root(uri)
    return _is_marker(fs, f"{root}/{IMPORT_MARKER}")


# --- the destination ----------------------------------------------------------------------------


def dataset_at(uri: str) -> bool:
    """Whether ``uri`` holds a manifest (readable or not): an import must not write over it."""
    fs, root = open_root(uri)
    try:
        return fs.get_file_info(f"{root}/{MANIFEST}").type == pafs.FileType.File
    except (OSError, pa.ArrowException) as exc:
        _raise_if_remote(uri, fs, exc)
        return False


def leftovers(uri: str) -> list[pafs.FileInfo] | None:
    """What an unfinished import left at ``uri`` (no manifest): its marker, split folders and their shard files.

    [] for a missing or empty destination; None when ``uri`` holds anything an import cannot prove
    it wrote, which an import must not touch: a manifest, another file, a folder of another name,
    or split folders and shard-named files without the import's marker (the user's own Parquet, or a
    Relay dataset whose manifest was lost or is not copied yet). Only the top level and the split
    folders are listed, so a foreign folder costs one listing. An import killed before it could
    clean up (SIGKILL, a lost machine), or one whose cleanup met a storage error, leaves exactly
    this, and an S3 import also leaves folder marker objects.
    """
    fs, root = open_root(uri)
    try:
        kind = fs.get_file_info(root).type
        if kind != pafs.FileType.Directory:
            return [] if kind == pafs.FileType.NotFound else None
        top = fs.get_file_info(pafs.FileSelector(root))
        if not top:
            return []
        splits = [info for info in top if info.type == pafs.FileType.Directory and info.base_name in SPLIT_NAMES]
        markers = [info for info in top if info.type == pafs.FileType.File and info.base_name == IMPORT_MARKER]
        extra = [info for info in top if info.type == pafs.FileType.File and info.base_name == SAMPLE_FILES]
        if len(splits) + len(markers) + len(extra) != len(top) or not markers or not _is_marker(fs, markers[0].path):
            return None
        found = [info for folder in splits for info in fs.get_file_info(pafs.FileSelector(folder.path))]
    except (OSError, pa.ArrowException) as exc:
        _raise_if_remote(uri, fs, exc)
        return []  # a local folder that cannot be listed: the import's first write names the problem
    if any(info.type != pafs.FileType.File or not SHARD_NAME.fullmatch(info.base_name) for info in found):
        return None
    return [*found, *extra, *splits, *markers]


def shard_files(found: Sequence[pafs.FileInfo]) -> int:
    """How many of what ``leftovers`` found are shard files (not folders, not the marker or a sample file list)."""
    return sum(info.type == pafs.FileType.File and SHARD_NAME.fullmatch(info.base_name) is not None for info in found)


def clear_leftovers(uri: str, found: Sequence[pafs.FileInfo]) -> None:
    """Delete what ``leftovers`` found: the shard files, the split folders (and S3's folder markers), the marker last."""
    fs, _ = open_root(uri)
    for info in found:
        if info.type == pafs.FileType.File and info.base_name != IMPORT_MARKER:
            fs.delete_file(info.path)
    for info in found:
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
    for info in found:
        if info.type == pafs.FileType.File and info.base_name == IMPORT_MARKER:
            fs.delete_file(info.path)


def check_bucket(uri: str) -> None:
    """An S3 or GCS destination's bucket must exist: checked before the source is read, not at the first write."""
    fs, root = open_root(uri)
    if fs.type_name not in ("s3", "gcs"):
        return
    bucket = root.split("/", 1)[0]
    try:
        missing = fs.get_file_info(bucket).type == pafs.FileType.NotFound
    except (OSError, pa.ArrowException) as exc:
        _raise_if_remote(uri, fs, exc)
        raise
    if missing:
        raise DatasetError(
            f"{uri}: bucket {bucket!r} does not exist; create it first (e.g. `aws s3 mb {fs.type_name}://{bucket}`"
            " with the same endpoint), or fix the URI"
        )


def _raise_if_remote(uri: str, fs: pafs.FileSystem, exc: Exception) -> None:
    """Remote storage that does not answer is named before an import reads its source, not after."""
    if isinstance(exc, OSError) and not isinstance(fs, pafs.LocalFileSystem):
        raise DatasetError(unreachable(uri, exc)) from exc


def remove(uri: str, paths: Iterable[str], folders: Iterable[str] = ()) -> list[str]:
    """Delete files a failed import wrote (absolute paths on ``uri``'s filesystem), then ``folders`` if empty;
    the files that could not be deleted (the store stopped answering), so the import can say what may be left.

    Missing ones are fine. A folder is removed only when nothing is left in it, so a failed import
    never deletes what it did not write.
    """
    fs, _ = open_root(uri)
    kept = []
    for path in paths:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException):
            kept.append(path)
    for folder in folders:
        try:
            if fs.get_file_info(folder).type == pafs.FileType.Directory and not fs.get_file_info(
                pafs.FileSelector(folder, allow_not_found=True)
            ):
                fs.delete_dir(folder)
        except (OSError, pa.ArrowException):
            pass
    return kept
