"""Checking a sharded dataset against its manifest: cheaply before a run, by digest once, row by row on error.

The cheap checks (``read_labels``, ``open_shard``) read footers and two narrow columns: every
shard is there with the manifest's size, schema and row count, sample ids run on, labels are null
(unknown) or lie in the classes, and the split holds as many null labels as its manifest says. The driver runs them before anything starts (exit 2), every reader opens a shard
through ``open_shard``. ``verify_digests`` reads every byte, so it runs once, in the split stage
(and in `relay data info --verify`). Every problem is a DatasetError naming the shard and row,
collected and raised at once. A repeated import checks its source as well: ``files_fingerprint``
is what the manifest records of a folder source's files, ``files_change`` what differs since.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.datasets.shards import (
    MANIFEST,
    REIMPORT,
    DatasetError,
    DatasetManifest,
    Shard,
    one_line,
    open_root,
    read_fix,
    shard_schema,
)

_CHUNK = 1 << 20
_MAX_LISTED = 8  # problems listed per message; the count of the rest follows
WRONG_SCHEMA_FIX = (
    "re-import the dataset from its source with `relay data import` (into a new path), or write it again with "
    "pipelines.datasets.shards.write_dataset, which writes these columns (docs/CONTRACTS.md, Writing a dataset "
    "yourself)"
)


def read_labels(uri: str, manifest: DatasetManifest, split: str) -> np.ndarray:
    """The label column of a split as int64 (-1: unknown), checked shard by shard.

    Reads only ``sample_id`` and ``label`` (a few bytes a row): all that drawing a split needs.
    Every shard must be there with the manifest's size, schema and row count, sample ids must
    run on from the previous shard, labels must be null (unknown) or lie in ``[0, classes)``, and
    the split must hold as many null labels as the manifest says; every problem is collected and
    raised at once, each naming the shard and row.
    """
    fs, root = open_root(uri)
    schema = shard_schema(manifest.encoding, manifest.image_shape)
    parts: list[np.ndarray] = []
    problems: list[str] = []
    start = 0
    for shard in manifest.splits[split].shards:
        try:
            parts.append(_shard_labels(fs, root, shard, schema, start, manifest.num_classes))
        except DatasetError as exc:
            problems.append(str(exc))
            parts.append(np.full(shard.rows, -1, dtype=np.int64))
        start += shard.rows
    _raise_all(problems)
    labels = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    _check_unlabeled(split, manifest.splits[split].unlabeled, int(np.sum(labels < 0)))
    return labels


def _check_unlabeled(split: str, listed: int, found: int) -> None:
    """The manifest's count of rows without a label must be the shards': `relay data info` prints it as the
    dataset's, and a hand-written manifest that says 0 while the shards hold nulls would pass unnoticed."""
    if listed != found:
        raise DatasetError(
            f"{MANIFEST}: split {split} lists {listed} rows without a label, but its shards hold {found} null "
            f"labels; the manifest does not describe its shards: {REIMPORT}, or write the dataset with "
            "pipelines.datasets.shards.write_dataset, which counts them"
        )


def _shard_labels(
    fs: pafs.FileSystem, root: str, shard: Shard, schema: pa.Schema, start: int, num_classes: int
) -> np.ndarray:
    """One shard's labels, after checking its size, schema, rows, sample ids and label range."""
    parquet = open_shard(fs, root, shard, schema)
    try:
        table = parquet.read(columns=["sample_id", "label"])
    except (OSError, pa.ArrowException) as exc:
        raise shard_read_error(fs, root, shard, exc) from exc
    _check_sample_ids(shard, table.column("sample_id"), start)
    column = table.column("label")
    labels = pc.fill_null(column, -1).to_numpy().astype(np.int64)
    known = np.asarray(pc.is_valid(column))
    bad = np.flatnonzero(known & ((labels < 0) | (labels >= num_classes)))
    if bad.size:
        row = int(bad[0])
        unknown = "; an unknown label is null, not negative: write it as null" if labels[row] < 0 else ""
        raise DatasetError(
            f"{shard.path} row {row}: label {int(labels[row])} is outside 0..{num_classes - 1} "
            f"(the manifest lists {num_classes} classes; {bad.size} such rows in this shard){unknown}"
        )
    return labels


def _check_sample_ids(shard: Shard, column: pa.ChunkedArray, start: int) -> None:
    """Sample ids must be the rows' positions in the split, none of them null (a nullable column is taken
    when it holds no nulls: what pyarrow writes by default)."""
    if column.null_count:
        row = int(np.flatnonzero(~np.asarray(pc.is_valid(column)))[0])
        raise DatasetError(
            f"{shard.path} row {row}: sample_id is null, expected {start + row} "
            f"(sample ids are row positions in the split; {column.null_count} null in this shard)"
        )
    ids = column.to_numpy()
    wrong = np.flatnonzero(ids != np.arange(start, start + shard.rows))
    if wrong.size:
        row = int(wrong[0])
        raise DatasetError(
            f"{shard.path} row {row}: sample_id {int(ids[row])}, expected {start + row} "
            f"(sample ids are row positions in the split); {REIMPORT}"
        )


def open_shard(fs: pafs.FileSystem, root: str, shard: Shard, schema: pa.Schema) -> pq.ParquetFile:
    """A shard's ParquetFile after the cheap checks: it exists, with the manifest's size, schema and rows.

    A column the schema declares not null may be nullable in the file when it holds no nulls (the
    footer's null counts say so): pyarrow writes every field nullable unless told otherwise.
    """
    path = f"{root}/{shard.path}"
    try:
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise DatasetError(f"{shard.path}: the shard is missing (listed in {MANIFEST}); {REIMPORT}")
        if info.size != shard.bytes:
            raise DatasetError(
                f"{shard.path}: {info.size} bytes, the manifest says {shard.bytes}: "
                f"the shard changed after the import; {REIMPORT}"
            )
        parquet = pq.ParquetFile(fs.open_input_file(path))
    except (OSError, pa.ArrowException) as exc:
        raise shard_read_error(fs, root, shard, exc, "open") from exc
    got = parquet.schema_arrow
    if not _same_columns(got, schema):
        raise DatasetError(
            f"{shard.path}: wrong schema: expected {_columns(schema)} (nullable or not); got {_columns(got)}; "
            f"{WRONG_SCHEMA_FIX}"
        )
    if parquet.metadata.num_rows != shard.rows:
        raise DatasetError(f"{shard.path}: {parquet.metadata.num_rows} rows, the manifest says {shard.rows}")
    _check_no_null_images(shard, parquet)
    return parquet


def _same_columns(got: pa.Schema, expected: pa.Schema) -> bool:
    """Whether ``got`` has ``expected``'s columns in order and of its types, nullability and the name of a
    list's item aside (pyarrow writes `element` where Relay writes `item`); nulls are checked by the reads."""
    if got.names != expected.names:
        return False
    return all(_bare(g.type).equals(_bare(e.type)) for g, e in zip(got, expected, strict=True))


def _bare(kind: pa.DataType) -> pa.DataType:
    """A type without its list item's name and nullability: what `_same_columns` compares."""
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_type, kind.list_size)
    return kind


def _check_no_null_images(shard: Shard, parquet: pq.ParquetFile) -> None:
    """Refuse an image column the footer says holds nulls (a null image or pixel): a row group's statistics,
    so no image is read. A file without statistics is checked when its images decode."""
    field = parquet.schema_arrow.field("image")
    if not field.nullable and not (pa.types.is_fixed_size_list(field.type) and field.type.value_field.nullable):
        return
    meta, first = parquet.metadata, 0
    leaves = [i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == "image"]
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        for leaf in leaves:
            stats = meta.row_group(group).column(leaf).statistics
            if stats is not None and stats.has_null_count and stats.null_count:
                raise DatasetError(
                    f"{shard.path}: row group {group} (rows {first}..{first + rows - 1}) holds {stats.null_count} "
                    "null image value(s); every image must be whole: write the image column without nulls"
                )
        first += rows


def shard_read_error(
    fs: pafs.FileSystem, root: str, shard: Shard, exc: BaseException, what: str = "read"
) -> DatasetError:
    """A shard that does not parse, said as its sha256 mismatch when its bytes changed since the import (a flipped
    byte: what Parquet says of it, a thrift error, names no cause), else as what Parquet said, on one line.
    Hashes the shard: on this error path only."""
    changed = _sha256_mismatch(fs, root, shard)
    if changed:
        return DatasetError(changed)
    return DatasetError(f"{shard.path}: could not {what} the shard ({one_line(exc)}); {read_fix(exc, root)}")


def _sha256_mismatch(fs: pafs.FileSystem, root: str, shard: Shard) -> str | None:
    """The message for a shard whose sha256 is not the manifest's; None when it matches or cannot be read."""
    try:
        found = _sha256(fs, root, shard)
    except (OSError, pa.ArrowException):
        return None
    return None if found == shard.sha256 else _mismatch(shard, found)


def _sha256(fs: pafs.FileSystem, root: str, shard: Shard) -> str:
    """A shard's sha256, streamed in constant memory."""
    digest = hashlib.sha256()
    with fs.open_input_stream(f"{root}/{shard.path}") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(shard: Shard, found: str) -> str:
    return (
        f"{shard.path}: sha256 {found[:16]} does not match the manifest's {shard.sha256[:16]}: "
        f"the shard changed after the import; {REIMPORT}"
    )


def changed_shards(uri: str, manifest: DatasetManifest) -> list[str]:
    """Every shard the manifest lists that is missing or not its recorded size: one listing, no shard read.

    What a repeated import checks before it calls the destination done: cheap enough for S3 (one
    HEAD a shard), and it catches a deleted, truncated or rewritten shard (not one edited in place
    at the same size: that is the sha256's job, in the split stage and `relay data info --verify`).
    """
    fs, root = open_root(uri)
    listed = [shard for split in manifest.splits.values() for shard in split.shards]
    infos = fs.get_file_info([f"{root}/{shard.path}" for shard in listed])
    problems = []
    for shard, info in zip(listed, infos, strict=True):
        if info.type != pafs.FileType.File:
            problems.append(f"{shard.path} is missing")
        elif info.size != shard.bytes:
            problems.append(f"{shard.path} is {info.size} bytes, the manifest says {shard.bytes}")
    return problems


def files_fingerprint(base: Path, files: Iterable[tuple[str, Path | str]]) -> dict[str, Any]:
    """How many files an import of ``base`` reads, their bytes, a sha256 over (split, path, size) and
    one over (split, path, mtime_ns, ctime_ns).

    Recorded in the manifest's source identity, so a repeated import notices a folder that gained,
    lost, renamed, replaced or edited files since: a listing and a stat per file, no file is read.
    Sizes alone missed an image rewritten at the same size (two 123-byte PNGs swapped: the import
    called the stale shards done). The times catch it: the mtime an edit in place, the ctime a file
    moved or copied in with its old mtime kept (``mv``, ``cp -p``, ``rsync -a``), which only the
    kernel sets. Not content hashes: they would read the whole folder on every repeated import
    (ImageNet: 140 GB) to find out nothing changed, where the stat costs what the listing does.
    The price is a false alarm after a ``chmod`` or ``touch``: the import refuses and says so,
    never stale shards. The times get their own digest, so a manifest written before they were
    recorded still compares by names and sizes (``files_change``), and the import records it outside
    the dataset's digest (``shards.DatasetManifest.source_times``): new times alone, imported again,
    make the same dataset.
    """
    sizes, times = hashlib.sha256(), hashlib.sha256()
    count = total = 0
    for split, path in files:
        stat, name = os.stat(path), os.path.relpath(path, base)
        sizes.update(f"{split}\t{name}\t{stat.st_size}\n".encode())
        times.update(f"{split}\t{name}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\n".encode())
        count, total = count + 1, total + stat.st_size
    return {"count": count, "bytes": total, "sha256": sizes.hexdigest(), "times": times.hexdigest()}


FINGERPRINT_FIELDS: dict[str, type] = {"count": int, "bytes": int, "sha256": str, "times": str}  # files_fingerprint's


def fingerprint_problem(fingerprint: Any, times: bool = True) -> str | None:
    """What keeps ``fingerprint`` from being what ``files_fingerprint`` returns, in words; None when nothing.

    Why checked: a source's ``files`` that returned its own dict (``{name: size}``) imported once, and the
    repeated import ended in a KeyError traceback from ``files_change``. ``times=False``: a manifest written
    before the times were recorded lacks them and is still compared by names and sizes.
    """
    if not isinstance(fingerprint, Mapping):
        return f"a {type(fingerprint).__name__}, not a mapping"
    fields = {key: kind for key, kind in FINGERPRINT_FIELDS.items() if times or key != "times"}
    wrong = [
        key
        for key, kind in fields.items()
        if not isinstance(fingerprint.get(key), kind) or isinstance(fingerprint.get(key), bool)
    ]
    if not wrong:
        return None
    keys = ", ".join(map(repr, list(fingerprint)[:5])) + (", ..." if len(fingerprint) > 5 else "")
    return f"a mapping of keys {keys or 'none'}, without {', '.join(wrong)} as files_fingerprint makes them"


# What changes a file's mtime or ctime: the edits the times are recorded to catch, and what changes no byte yet
# looks the same to a stat (``files_fingerprint``: only reading every file would tell them apart).
TIMES_CHANGED_BY = (
    "a file edited in place, or two swapped; or no byte changed and only their times did, which `touch`, `chmod`, "
    "a hard link, or a copy that kept the old mtime (`cp -p`, `rsync -a`) also do: the import cannot tell which "
    "without reading every file"
)


def files_change(imported: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str | None:
    """How a folder source's files differ from those imported; None when the same, or when the manifest
    predates what differs (no fingerprint: the source and options alone decide; no times: names and
    sizes do), which ``unchecked_files`` then says."""
    if not imported or not now:
        return None
    then_, now_ = (f"{f['count']} file(s), {f['bytes']} bytes" for f in (imported, now))
    if then_ != now_:
        return f"it holds {now_}; the import read {then_}"
    if imported.get("sha256") != now.get("sha256"):
        return f"still {now_}, but other names or sizes"
    if imported.get("times", now["times"]) != now["times"]:
        return f"still {now_} of the same names and sizes, but modified since ({TIMES_CHANGED_BY})"
    return None


def unchecked_files(imported: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str:
    """What a repeated import could not compare, for a manifest an older Relay wrote; '' when nothing."""
    if not now or (imported and "times" in imported):
        return ""
    what = "the source's files" if not imported else "when the source's files were modified"
    return (
        f" (its manifest, from an older Relay, does not record {what}: a file edited since would not show; "
        "to be sure, remove the destination and import again)"
    )


def _columns(schema: pa.Schema) -> str:
    """The columns and their types as `_same_columns` compares them: nullability is no part of it."""
    return ", ".join(f"{f.name} {_bare(f.type)}" for f in schema)


def verify_digests(
    uri: str,
    manifest: DatasetManifest,
    splits: Iterable[str] | None = None,
    hashed: Callable[[int], object] | None = None,
) -> None:
    """Hash every shard (streamed, constant memory) against the manifest; DatasetError lists every mismatch.

    ``hashed`` is given each shard's bytes once it is hashed (a progress bar's ``update``): `relay data info
    --verify` hashed 2M rows for 18 s with nothing on the screen.
    """
    fs, root = open_root(uri)
    problems = []
    for name in manifest.splits if splits is None else splits:
        for shard in manifest.splits[name].shards:
            problem = _digest_problem(fs, root, shard)
            if problem is not None:
                problems.append(problem)
            if hashed is not None:
                hashed(shard.bytes)
    _raise_all(problems)


def _digest_problem(fs: pafs.FileSystem, root: str, shard: Shard) -> str | None:
    """What is wrong with a shard's bytes (unreadable, or not the manifest's sha256); None when they match."""
    try:
        found = _sha256(fs, root, shard)
    except (OSError, pa.ArrowException) as exc:
        return f"{shard.path}: could not read the shard ({one_line(exc)}); {read_fix(exc, root)}"
    return None if found == shard.sha256 else _mismatch(shard, found)


def _raise_all(problems: Sequence[str]) -> None:
    """One DatasetError listing the problems (the first _MAX_LISTED, then how many more)."""
    if not problems:
        return
    listed = list(problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
        listed.append(f"... and {len(problems) - _MAX_LISTED} more")
    raise DatasetError("; ".join(listed))
