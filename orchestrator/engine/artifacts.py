"""Content-addressed storage of stage outputs on any pyarrow filesystem.

Layout: ``<root>/stages/<fingerprint>/<output>.<parquet|pt>`` (``/`` in an output's name written ``_``), extra files
under ``files/``, and ``manifest.json``. Every file is written under a
temporary name and renamed into place, and the manifest is written last, so
"the manifest exists" means "the stage's outputs are complete". Digests of the
stored bytes (``orchestrator.engine.digests``: xxh3-128, sha256 in older
manifests) are checked before a cache hit, so a truncated or altered file is
detected and recomputed instead of silently used. The manifest's format and that check are
``orchestrator.engine.manifests``; checkpoints' bytes ``orchestrator.engine.checkpoints``.

An S3 store gets bounded timeouts and retries (``orchestrator.engine.filesystems``: 10 s to
connect, 30 s without a byte, 3 attempts), so a store that stops answering fails a request after
about 90 s with "does not answer" instead of holding the run silent until it answers again.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.dag import StageResult
from orchestrator.engine.checkpoints import load_checkpoint, serialize_checkpoint
from orchestrator.engine.digests import ALGORITHM, digest_of
from orchestrator.engine.filesystems import filesystem_from_uri
from orchestrator.engine.manifests import (
    ArtifactRef,
    Manifest,
    file_intact,
    manifest_from_json,
    manifest_to_json,
    output_intact,
)
from orchestrator.engine.parquet import HashingSink, read_parquet, write_parquet
from orchestrator.engine.store_faults import StoreFault, store_failure, store_fault
from orchestrator.errors import ArtifactError
from orchestrator.names import sanitize

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRAIN_DIR = "ray_train"  # data-parallel stages' Ray Train runs (their checkpoints), under the store's root
RERUN_MARK = "rerun_by"  # scratch file naming the run that computes a stage afresh on request
TEMP_MARK = ".tmp-"  # a file is written as NAME.tmp-HEX, then renamed to NAME: no reader sees half a file
TEMP_SUFFIX = re.compile(re.escape(TEMP_MARK) + "[0-9a-f]{32}$")


def join_uri(uri: str, relative: str) -> str:
    """``relative`` under the store ``uri``, before its query (``s3://b/r?endpoint_override=H`` ->
    ``s3://b/r/x?endpoint_override=H``): appended after the query, a path reads as part of the last option."""
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{relative.lstrip('/')}{sep}{query}"


def train_run_name(fingerprint: str, stage_name: str) -> str:
    """Deterministic and unique per stage version: the same stage resumes, another never collides."""
    return f"{fingerprint[:16]}-{sanitize(stage_name)}"


class ArtifactStore:
    """Reads and writes stage outputs under one root (local path or filesystem URI)."""

    def __init__(self, uri: str) -> None:
        if "://" in uri:
            self._fs, root = filesystem_from_uri(uri)  # ValueError for a bad URI: cli.preflight.open_store
        else:  # absolute, because workers rebuild the store from ``uri`` in another cwd
            uri = root = str(Path(uri).expanduser().resolve())
            self._fs = pafs.LocalFileSystem()
        if isinstance(self._fs, pafs.LocalFileSystem):  # memory-mapped reads save a copy per load
            self._fs = pafs.LocalFileSystem(use_mmap=True)  # safe: files are renamed in, never rewritten in place
        self.uri = uri
        self._root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri!r})"

    def _abs(self, relative: str) -> str:
        return f"{self._root}/{relative}"

    def stage_dir(self, fingerprint: str) -> str:
        """Relative directory of one stage's outputs."""
        return f"stages/{fingerprint}"

    def write_stage(
        self,
        fingerprint: str,
        stage: str,
        result: StageResult,
        series: Sequence[tuple[int, Mapping[str, float]]] = (),
        duration_s: float = 0.0,
        started: float | None = None,
        node: str = "",
    ) -> Manifest:
        """Store every output and file, then the manifest, each atomically.

        An old manifest is removed first, so a rewrite that is interrupted
        leaves the stage visibly incomplete rather than pointing at a mix of
        old and new files. ``started`` (a perf_counter value) makes the
        duration include the writing, where streamed outputs are computed.
        """
        directory = self.stage_dir(fingerprint)
        try:
            self._fs.create_dir(self._abs(directory), recursive=True)
        except (OSError, pa.ArrowException) as exc:
            raise self._unwritable(stage, self._abs(directory), exc) from exc
        self._delete(f"{directory}/{MANIFEST}")
        outputs = {name: self._write_output(directory, name, value) for name, value in result.outputs.items()}
        files = {
            name: self._write_file(f"{directory}/files/{sanitize(name)}", name, data)
            for name, data in result.files.items()
        }
        if started is not None:  # a streamed output does its work while it is written
            duration_s = time.perf_counter() - started
        manifest = Manifest(
            stage=stage,
            fingerprint=fingerprint,
            outputs=outputs,
            metrics={k: float(v) for k, v in result.metrics.items()},
            series=[(int(step), {k: float(v) for k, v in values.items()}) for step, values in series],
            files=files,
            file_digests={name: f"{ALGORITHM}:{digest_of(bytes(data))}" for name, data in result.files.items()},
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            duration_s=float(duration_s),
            node=node,
        )
        payload = json.dumps(manifest_to_json(manifest), indent=2, sort_keys=True).encode()
        self._write_bytes(f"{directory}/{MANIFEST}", MANIFEST, payload)
        return manifest

    def _write_output(self, directory: str, name: str, value: Any) -> ArtifactRef:
        """Store one output: tables are streamed to Parquet, checkpoints serialized in memory first.

        A whole table goes through the same ``_write_stream`` as a RecordBatchReader, so both
        get one layout and one digest path (no whole-file buffer: 3-5x faster, benchmarks/artifacts.py).
        """
        if isinstance(value, pa.Table):
            value = pa.RecordBatchReader.from_batches(value.schema, value.to_batches())
        if isinstance(value, pa.RecordBatchReader):
            return self._write_stream(f"{directory}/{sanitize(name)}.parquet", name, value)
        kind, suffix, data = serialize_checkpoint(name, value)
        path = f"{directory}/{sanitize(name)}.{suffix}"
        self._write_bytes(path, name, data)
        meta = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, (str, int, float, bool))}
        digest = digest_of(data)
        return ArtifactRef(
            name=name, path=path, kind=kind, digest=digest, size=len(data), algorithm=ALGORITHM, meta=meta
        )

    def _write_stream(self, path: str, name: str, reader: pa.RecordBatchReader) -> ArtifactRef:
        """Write batches to Parquet as they arrive, hashing the bytes on the way out.

        Memory stays at one batch whatever the table's size. Same temp-name and
        rename discipline as ``_write_bytes``: a reader that fails halfway
        leaves no file under the final name. The file has the reader's own schema
        (``write_parquet``), so any Parquet reader sees the contract.
        """
        final = self._abs(path)
        temp = f"{final}{TEMP_MARK}{uuid.uuid4().hex}"
        try:
            self._fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            with self._fs.open_output_stream(temp) as stream:
                sink = HashingSink(stream)
                write_parquet(sink, reader, name)
            self._fs.move(temp, final)
        except (OSError, pa.ArrowException) as exc:
            self._discard(temp, exc)
            raise self._unwritable(name, final, exc) from exc
        except BaseException:
            self._delete_abs(temp)
            raise
        digest = sink.digest.hexdigest()
        return ArtifactRef(name=name, path=path, kind="table", digest=digest, size=sink.size, algorithm=sink.algorithm)

    # --- in-stage checkpoints: scratch space under the stage's directory, not part of its outputs

    def scratch_path(self, fingerprint: str, name: str) -> str:
        """Relative path of a scratch file of one stage (in-stage checkpoints)."""
        return f"{self.stage_dir(fingerprint)}/scratch/{sanitize(name)}"

    def write_scratch(self, fingerprint: str, name: str, data: bytes) -> None:
        """Atomically replace a scratch file: a crash mid-write keeps the previous one."""
        self._write_bytes(self.scratch_path(fingerprint, name), name, data)

    def read_scratch(self, fingerprint: str, name: str) -> bytes | None:
        """A scratch file's bytes, or None when an earlier attempt left none."""
        try:
            with self._fs.open_input_stream(self._abs(self.scratch_path(fingerprint, name))) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            logger.warning("ignoring unreadable scratch file %s of %s: %s", name, fingerprint[:12], exc)
            return None

    def restart_progress(self, fingerprint: str, stage_name: str, run_id: str) -> None:
        """Drop the in-stage checkpoints another run left for a stage this run computes afresh on request.

        Why: a stage rerun on request (`--no-cache`, `--rerun-from`) keeps the fingerprint of its
        cached output, and an attempt killed earlier under that fingerprint may have left a
        checkpoint (the scratch space, or a Ray Train run of the same name) that training would
        resume from, so "cache not read" would not hold. The run then marks the scratch space as
        its own: its own resume, after a kill, keeps the progress it made.
        """
        if self.read_scratch(fingerprint, RERUN_MARK) == run_id.encode():
            return
        self.clear_scratch(fingerprint)
        try:
            self._fs.delete_dir(self._abs(f"{TRAIN_DIR}/{train_run_name(fingerprint, stage_name)}"))
        except (FileNotFoundError, OSError):
            pass
        self.write_scratch(fingerprint, RERUN_MARK, run_id.encode())

    def clear_scratch(self, fingerprint: str) -> None:
        """Remove a finished stage's scratch space; its checkpoints are no longer needed."""
        try:
            self._fs.delete_dir(self._abs(f"{self.stage_dir(fingerprint)}/scratch"))
        except (FileNotFoundError, OSError):
            pass

    def _write_file(self, path: str, name: str, data: bytes) -> str:
        if not isinstance(data, (bytes, bytearray)):
            raise ArtifactError(
                name, f"files must be bytes (got {type(data).__name__}); encode it first", retryable=False
            )
        self._write_bytes(path, name, bytes(data))
        return path

    def _write_bytes(self, path: str, name: str, data: bytes | memoryview) -> None:
        """Write to a unique temporary name, then rename into place."""
        final = self._abs(path)
        temp = f"{final}{TEMP_MARK}{uuid.uuid4().hex}"
        try:
            self._fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            with self._fs.open_output_stream(temp) as stream:
                stream.write(data)
            self._fs.move(temp, final)
        except (OSError, pa.ArrowException) as exc:
            self._discard(temp, exc)
            raise self._unwritable(name, final, exc) from exc

    def _discard(self, temp: str, exc: BaseException) -> None:
        """Delete the temporary file of a failed write, unless the store did not answer it: the delete
        would wait out the same timeouts again (minutes) before the error is told. One left in a stage's
        folder is removed by ``relay gc`` (``temp_files``); one beside a run's record goes with the run."""
        if store_fault(exc) is not StoreFault.UNREACHABLE:
            self._delete_abs(temp)

    def _unwritable(self, name: str, path: str, exc: BaseException) -> ArtifactError:
        """The error for a write the store failed, with the fix its cause calls for: "check the store is
        writable" told a user whose S3 endpoint had gone away to look at permissions."""
        fault = store_failure(self.uri, exc)
        return ArtifactError(name, f"could not write {path}: {fault or f'{exc}; check the store is writable'}")

    def _delete(self, relative: str) -> None:
        self._delete_abs(self._abs(relative))

    def _delete_abs(self, path: str) -> None:
        try:
            self._fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass

    def read_manifest(self, fingerprint: str) -> Manifest | None:
        """The stage's manifest, or None when the stage never completed there."""
        path = self._abs(f"{self.stage_dir(fingerprint)}/{MANIFEST}")
        try:
            with self._fs.open_input_stream(path) as stream:
                raw = stream.read()
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(MANIFEST, f"could not read {path}: {exc}") from exc
        try:
            return manifest_from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable manifest %s (%s); the stage will be recomputed", path, exc)
            return None

    def verify(self, manifest: Manifest) -> list[str]:
        """Names of outputs and files whose stored size or digest differ from the manifest (or are gone).

        Files count too: a cache hit hands its plots to MLflow, so a deleted one made every later
        hit fail to log them, and left the stage's MLflow run open.
        """
        outputs = [
            name for name, ref in manifest.outputs.items() if not output_intact(self._fs, self._abs(ref.path), ref)
        ]
        return outputs + [
            name
            for name, path in manifest.files.items()
            if not file_intact(self._fs, self._abs(path), manifest.file_digests.get(name, ""))
        ]

    def load(self, ref: ArtifactRef) -> Any:
        """Read an output back: a pyarrow.Table or the checkpoint dict (weights_only)."""
        path = self._abs(ref.path)
        try:
            if ref.kind == "table":
                with self._fs.open_input_file(path) as source:
                    return read_parquet(source)
            with self._fs.open_input_stream(path) as stream:
                data = stream.read()
            return load_checkpoint(data)
        except ArtifactError:
            raise
        except Exception as exc:  # storage and decoding errors alike: wrap once with the name
            raise ArtifactError(ref.name, f"could not load {path}: {exc}; rerun the stage that produced it") from exc

    def read_bytes(self, relative: str) -> bytes:
        """Raw bytes of a stored file (e.g. a PNG listed in a manifest)."""
        path = self._abs(relative)
        try:
            with self._fs.open_input_stream(path) as stream:
                return stream.read()
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not read {path}: {exc}") from exc

    # --- run records: ``runs/<run id>/`` beside the outputs, so any machine that sees the store can resume a run

    def write_record(self, relative: str, data: bytes) -> None:
        """Atomically replace a small file of a run's record (config, command, ledger)."""
        self._write_bytes(relative, relative, data)

    def read_record(self, relative: str) -> bytes | None:
        """A run record file's bytes, or None when there is none."""
        try:
            with self._fs.open_input_stream(self._abs(relative)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not read {self._abs(relative)}: {exc}") from exc

    def newest_records(self, folder: str, name: str) -> list[str]:
        """``folder/<id>/name`` paths that exist, newest first (by modification time); [] when ``folder`` is not there.

        A folder that cannot be listed (not readable, a file, a bucket that refuses the listing) is an
        ArtifactError, not an empty store: read as "no runs", `relay gc` removed every stage output of
        every run as named by none, and `relay runs` said "no runs yet".
        """
        infos = self._listing(folder, recursive=True)
        found = [i for i in infos if i.type == pafs.FileType.File and i.base_name == name]
        found.sort(key=lambda info: info.mtime_ns or 0, reverse=True)
        return [info.path[len(self._root) + 1 :] for info in found]

    # --- freeing space (`relay delete`, `relay gc`): listing, sizing and removing whole folders

    def subfolders(self, relative: str) -> list[str]:
        """Names of the folders directly under ``relative`` (``stages`` -> fingerprints), [] when there is none."""
        infos = self._listing(relative, recursive=False)
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)

    def folder_bytes(self, relative: str) -> int:
        """The bytes of every file under ``relative`` (0 when it is not there)."""
        infos = self._listing(relative, recursive=True)
        return sum(info.size or 0 for info in infos if info.type == pafs.FileType.File)

    def temp_files(self, relative: str) -> list[tuple[str, int]]:
        """(path, bytes) of the unfinished writes under ``relative``: ``NAME.tmp-HEX`` files that no rename
        took into place, left by a writer killed mid-file (SIGKILL, a worker lost with its driver)."""
        infos = self._listing(relative, recursive=True)
        return sorted(
            (info.path[len(self._root) + 1 :], info.size or 0)
            for info in infos
            if info.type == pafs.FileType.File and TEMP_SUFFIX.search(info.base_name)
        )

    def _listing(self, relative: str, recursive: bool) -> list[pafs.FileInfo]:
        """What is under ``relative`` ([] when it is not there), or the error naming the folder not listed."""
        selector = pafs.FileSelector(self._abs(relative), allow_not_found=True, recursive=recursive)
        try:
            return self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not list {self._abs(relative)}: {exc}") from exc

    def delete_file(self, relative: str) -> None:
        """Remove one file; one already gone is no error."""
        self._delete_abs(self._abs(relative))

    def delete_folder(self, relative: str) -> None:
        """Remove ``relative`` and everything under it; a folder already gone is no error."""
        try:
            self._fs.delete_dir(self._abs(relative))
        except FileNotFoundError:
            return
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not delete {self._abs(relative)}: {exc}") from exc

    def local_path(self, relative: str) -> Path | None:
        """The local path of a stored file when the store is on the local disk, else None."""
        if isinstance(self._fs, pafs.LocalFileSystem):
            return Path(self._abs(relative))
        return None

    def location(self, relative: str) -> str:
        """A URI of a stored file that other tools (MLflow dataset sources) can resolve."""
        local = self.local_path(relative)
        return local.as_uri() if local is not None else join_uri(self.uri, relative)

    def shown(self, relative: str) -> str:
        """Where a person finds a stored file: its local path, or its URI on a remote store."""
        local = self.local_path(relative)
        return str(local) if local is not None else join_uri(self.uri, relative)
