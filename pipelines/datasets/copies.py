"""A SOURCE that is a Relay dataset (a folder or URI holding a manifest), copied to DEST as it is.

The copy happens once its shards pass the checks a run makes (schema, rows, sample ids, labels), each file
checked against the manifest's sha256 as it streams in COPY_BLOCK pieces, the manifest last: moving a
dataset to S3 or a cluster mount keeps its digest, where the data's original source may be gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from tqdm import tqdm

from pipelines.datasets import checks, shards
from pipelines.datasets.import_checks import check_apart, clear_unfinished, manifest_there
from pipelines.datasets.info import dataset_summary, use_line
from pipelines.datasets.sources import SOURCES

COPY_BLOCK = 8 << 20  # bytes a copy holds at once: a shard is streamed, never held whole


def holds_dataset(source: str) -> bool:
    """Whether SOURCE is a Relay dataset (a manifest there), not a source name: what an import copies as it is."""
    if source in SOURCES or ("://" not in source and not Path(source).expanduser().is_dir()):
        return False
    return shards.dataset_at(source)


def check_copy(source: str, dest: str, options: Mapping[str, Any]) -> shards.DatasetManifest:
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
        check_apart(Path(source).expanduser().resolve(), dest)
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


def copied_already(source: str, dest: str, manifest: shards.DatasetManifest) -> dict[str, Any]:
    """A repeated copy is a no-op while DEST holds the same dataset (same digest, every shard at its size)."""
    retry = f"remove {dest} (or copy into a new path) to copy it again"
    there = manifest_there(dest, retry)
    if there.digest != manifest.digest:
        raise ValueError(
            f"{dest} already holds a different dataset (digest {there.digest[:16]}, {source} is "
            f"{manifest.digest[:16]}); copy into a new destination, or delete that one first"
        )
    changed = checks.changed_shards(dest, there)
    if changed:
        raise ValueError(f"{dest} changed after it was written: {', '.join(changed)}; {retry}")
    return {**dataset_summary(dest, there), "note": f"already a copy of {source}: nothing written"}


def copy_dataset(source: str, dest: str, manifest: shards.DatasetManifest) -> dict[str, Any]:
    """Copy the dataset at ``source`` to ``dest`` file by file, each checked against the manifest's sha256 as
    it streams, the manifest last; the copy's digest is then read back and must be the source's.

    Why not re-import: the copy is the same dataset (same bytes, same digest, so `data.digest` pins both),
    and the data's original source may be gone. Like an import it writes its marker first and removes
    what it wrote if anything fails, so a failed copy leaves no half dataset.
    """
    notes = clear_unfinished(dest)
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
    return {**dataset_summary(dest, copied), **notes, "note": note, "use": use_line(dest)}


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
