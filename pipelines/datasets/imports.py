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

This module is the import's outline; its parts live beside it, and the names the CLI
(pipelines/registry.py), plug-ins and tests import from here are re-exported (``__all__``):
``sources`` (``SOURCES`` and their openers), ``folder_layouts`` (a folder laid out almost as a
source reads it), ``import_checks`` (options and destination, before anything is read),
``import_identity`` (a repeated import), ``copies`` (a Relay dataset copied as it is) and ``info``
(`relay data info`, and the summary an import prints).
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from tqdm import tqdm

from pipelines.datasets import codec, shards
from pipelines.datasets.copies import COPY_BLOCK, check_copy, copied_already, copy_dataset, holds_dataset
from pipelines.datasets.folder_layouts import folder_problem
from pipelines.datasets.import_checks import MAX_IMAGE_SIZE, OPTION_BOUNDS, check_apart, check_options, clear_unfinished
from pipelines.datasets.import_identity import already_there, identity_of, times_apart
from pipelines.datasets.info import dataset_summary, describe, use_line
from pipelines.datasets.sources import IMAGEFOLDER_CHUNK, SOURCES, Chunks, Source, SourceData, resolve

__all__ = [  # what the CLI (pipelines/registry.py), plug-ins and tests import from here
    "COPY_BLOCK",
    "IMAGEFOLDER_CHUNK",
    "MAX_IMAGE_SIZE",
    "OPTION_BOUNDS",
    "SOURCES",
    "Chunks",
    "ImportStoreError",
    "Source",
    "SourceData",
    "claims",
    "describe",
    "import_dataset",
    "resolve",
    "sample_files_csv",
    "use_line",
]

log = logging.getLogger(__name__)


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
        return holds_dataset(source)
    if "://" in source:
        return True
    path = Path(source).expanduser()
    if not path.is_dir():
        return False
    return holds_dataset(source) or resolve(source) is not None or folder_problem(path) is not None


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
        if holds_dataset(source):
            manifest = check_copy(source, dest, options)
            if shards.dataset_at(dest):
                return copied_already(source, dest, manifest)
            writing = True
            return copy_dataset(source, dest, manifest)
        kind, folder = _resolve(source)
        if folder is not None:
            check_apart(Path(source).expanduser().resolve(), dest)
        check_options(kind, folder, options)
        shards.check_bucket(dest)
        identity = identity_of(kind, folder, options)
        if shards.dataset_at(dest):
            return already_there(dest, kind, identity, options)
        writing = True
        return _write(kind, folder, dest, identity, options)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM, which the CLI raises as a SystemExit (exit 143)
        left = _left_at(dest) if writing else f"nothing was written to {dest}"
        log.warning("import interrupted; %s; start it again with: %s", left, _again(source, dest, options))
        raise
    except shards.StoreWriteError as exc:
        left = _kept_at(dest) if exc.kept else _left_at(dest)
        raise ImportStoreError(f"{left}; start it again with: {_again(source, dest, options)}") from exc


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
    notes = clear_unfinished(dest)
    opened = kind.open(folder, options)
    encoding = codec.choose_encoding(str(options.get("encoding") or "auto"), opened.image_shape)
    splits = {name: _Progress(name, count, chunks) for name, (count, chunks) in opened.splits.items()}
    refused = False
    signed, times = times_apart(identity)
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
    return {**dataset_summary(dest, manifest), **notes, "use": use_line(dest)}


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
        problem = folder_problem(path) if path.is_dir() else None
        if problem is not None:
            raise ValueError(f"SOURCE {source!r} {problem}")
        names = ", ".join(f"{name} ({s.description})" for name, s in SOURCES.items())
        raise ValueError(f"SOURCE {source!r} is neither a source name nor a folder one recognises; valid: {names}")
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
