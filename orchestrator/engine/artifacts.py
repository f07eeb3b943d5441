"""Content-addressed storage of stage outputs on any pyarrow filesystem.

Layout: ``<root>/stages/<fingerprint>/<output>.<parquet|pt>`` (``/`` in an output's name written ``_``), extra files
under ``files/``, and ``manifest.json``. Every file is written under a
temporary name and renamed into place, and the manifest is written last, so
"the manifest exists" means "the stage's outputs are complete". Digests of the
stored bytes (``orchestrator.engine.digests``: xxh3-128, sha256 in older
manifests) are checked before a cache hit, so a truncated or altered file is
detected and recomputed instead of silently used.

An S3 store gets bounded timeouts and retries (``orchestrator.engine.filesystems``: 10 s to
connect, 30 s without a byte, 3 attempts), so a store that stops answering fails a request after
about 90 s with "does not answer" instead of holding the run silent until it answers again.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.dag import StageResult
from orchestrator.engine.digests import ALGORITHM, LEGACY, digest_of, hasher
from orchestrator.engine.filesystems import filesystem_from_uri
from orchestrator.engine.parquet import HashingSink, read_parquet, write_parquet
from orchestrator.errors import ArtifactError, exception_chain

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRAIN_DIR = "ray_train"  # data-parallel stages' Ray Train runs (their checkpoints), under the store's root
RERUN_MARK = "rerun_by"  # scratch file naming the run that computes a stage afresh on request
TEMP_MARK = ".tmp-"  # a file is written as NAME.tmp-HEX, then renamed to NAME: no reader sees half a file
TEMP_SUFFIX = re.compile(re.escape(TEMP_MARK) + "[0-9a-f]{32}$")
_CHUNK = 1 << 20
_PLAIN = (bool, int, float, str, type(None))
# pyarrow raises every S3 (and GCS) failure as a plain OSError: only its text, AWS's error names and
# curl's messages, tells a store that refuses the credentials from one that does not answer.
DENIED_MARKERS = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "EXPIRED_TOKEN",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
)
UNREACHABLE_MARKERS = (
    "NETWORK_CONNECTION",
    "Could not connect",
    "Couldn't connect",
    "Connection refused",
    "Could not resolve host",
    "Couldn't resolve host",
    "Timeout was reached",
)
DENIED_FIX = (
    "the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the profile AWS_PROFILE names) are not "
    "accepted for that bucket; fix them"
)
UNREACHABLE_FIX = "check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server) and the network"


class StoreFault(Enum):
    """Why a remote store failed, as far as its error says; each calls for another fix."""

    DENIED = "denied"  # it answered and refused the credentials
    UNREACHABLE = "unreachable"  # it did not answer: the endpoint, the network, a server that went away


def store_fault(error: BaseException) -> StoreFault | None:
    """The fault behind ``error`` or any error it was raised from, None when its text names neither.

    One classifier for every message about a store (the run's preflight, stage outputs, the run
    record, `relay data`), because the same ACCESS_DENIED was called "does not answer" by two of them.
    """
    for exc in exception_chain(error):
        text = str(exc)
        if any(marker in text for marker in DENIED_MARKERS):
            return StoreFault.DENIED
        if isinstance(exc, ConnectionError) or any(marker in text for marker in UNREACHABLE_MARKERS):
            return StoreFault.UNREACHABLE
    return None


def store_failure(uri: str, error: BaseException) -> str | None:
    """What a store fault means and what to fix, naming the store and the error's first line; None when
    ``error`` is neither fault (a full disk, a read-only folder: the caller's own words fit those)."""
    fault = store_fault(error)
    detail = innermost_first_line(error)
    if fault is StoreFault.DENIED:
        return f"access to the store {uri} was denied ({detail}): {DENIED_FIX}"
    if fault is StoreFault.UNREACHABLE:
        return f"the store {uri} does not answer from this machine ({detail}); {UNREACHABLE_FIX}"
    return None


def innermost_first_line(error: BaseException) -> str:
    """The first line of the innermost error behind ``error``: the storage's own words, once."""
    root = list(exception_chain(error))[-1]
    lines = str(root).strip().splitlines()
    return lines[0] if lines else type(root).__name__


@dataclass(frozen=True)
class ArtifactRef:
    """Where one stored output lives and what its bytes hash to.

    ``path`` is relative to the store root, so a store can be moved or
    mounted elsewhere without rewriting manifests. ``algorithm`` names the
    digest's hash; manifests from before it existed used sha256.
    """

    name: str
    path: str
    kind: str  # "table" | "checkpoint"
    digest: str
    size: int
    algorithm: str = LEGACY
    # A checkpoint's plain top-level values (model name, classes, ...), so the driver can
    # describe a model without torch (importing torch in a Ray job's driver aborted it: seen).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The record that a stage finished: its outputs, metrics, step series and files."""

    stage: str
    fingerprint: str
    outputs: dict[str, ArtifactRef]
    metrics: dict[str, float] = field(default_factory=dict)
    series: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    file_digests: dict[str, str] = field(default_factory=dict)  # file name -> "ALGORITHM:HEX" (older manifests: none)
    created: str = ""
    duration_s: float = 0.0
    node: str = ""  # the Ray node id where the stage body ran (rank 0, or the pool's coordinator); "" locally


def join_uri(uri: str, relative: str) -> str:
    """``relative`` under the store ``uri``, before its query (``s3://b/r?endpoint_override=H`` ->
    ``s3://b/r/x?endpoint_override=H``): appended after the query, a path reads as part of the last option."""
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{relative.lstrip('/')}{sep}{query}"


def sanitize(name: str) -> str:
    """A file-name-safe version of an artifact name (``g00/model`` -> ``g00_model``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "artifact"


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
        payload = json.dumps(_manifest_to_json(manifest), indent=2, sort_keys=True).encode()
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
        kind, suffix, data = _serialize(name, value)
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
            return _manifest_from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable manifest %s (%s); the stage will be recomputed", path, exc)
            return None

    def verify(self, manifest: Manifest) -> list[str]:
        """Names of outputs and files whose stored size or digest differ from the manifest (or are gone).

        Files count too: a cache hit hands its plots to MLflow, so a deleted one made every later
        hit fail to log them, and left the stage's MLflow run open.
        """
        outputs = [name for name, ref in manifest.outputs.items() if not self._intact(ref)]
        return outputs + [name for name, path in manifest.files.items() if not self._file_intact(manifest, name, path)]

    def _file_intact(self, manifest: Manifest, name: str, path: str) -> bool:
        algorithm, _, expected = manifest.file_digests.get(name, "").partition(":")
        try:
            with self._fs.open_input_stream(self._abs(path)) as stream:
                data = stream.read()
            return not expected or digest_of(data, algorithm) == expected
        except (OSError, pa.ArrowException, ValueError):
            return False

    def _intact(self, ref: ArtifactRef) -> bool:
        path = self._abs(ref.path)
        try:
            info = self._fs.get_file_info(path)
            if info.type != pafs.FileType.File or info.size != ref.size:
                return False
            digest = hasher(ref.algorithm)
            with self._fs.open_input_stream(path) as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
        except (OSError, pa.ArrowException, ValueError):  # ValueError: an algorithm this version does not know
            return False
        return digest.hexdigest() == ref.digest

    def load(self, ref: ArtifactRef) -> Any:
        """Read an output back: a pyarrow.Table or the checkpoint dict (weights_only)."""
        path = self._abs(ref.path)
        try:
            if ref.kind == "table":
                with self._fs.open_input_file(path) as source:
                    return read_parquet(source)
            with self._fs.open_input_stream(path) as stream:
                data = stream.read()
            return _torch().load(io.BytesIO(data), map_location="cpu", weights_only=True)
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
        """``folder/<id>/name`` paths that exist, newest first (by modification time)."""
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._abs(folder), allow_not_found=True, recursive=True))
        except (OSError, pa.ArrowException):
            return []
        found = [i for i in infos if i.type == pafs.FileType.File and i.base_name == name]
        found.sort(key=lambda info: info.mtime_ns or 0, reverse=True)
        return [info.path[len(self._root) + 1 :] for info in found]

    # --- freeing space (`relay delete`, `relay gc`): listing, sizing and removing whole folders

    def subfolders(self, relative: str) -> list[str]:
        """Names of the folders directly under ``relative`` (``stages`` -> fingerprints), [] when there is none."""
        selector = pafs.FileSelector(self._abs(relative), allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not list {self._abs(relative)}: {exc}") from exc
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)

    def folder_bytes(self, relative: str) -> int:
        """The bytes of every file under ``relative`` (0 when it is not there)."""
        selector = pafs.FileSelector(self._abs(relative), allow_not_found=True, recursive=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not list {self._abs(relative)}: {exc}") from exc
        return sum(info.size or 0 for info in infos if info.type == pafs.FileType.File)

    def temp_files(self, relative: str) -> list[tuple[str, int]]:
        """(path, bytes) of the unfinished writes under ``relative``: ``NAME.tmp-HEX`` files that no rename
        took into place, left by a writer killed mid-file (SIGKILL, a worker lost with its driver)."""
        selector = pafs.FileSelector(self._abs(relative), allow_not_found=True, recursive=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(relative, f"could not list {self._abs(relative)}: {exc}") from exc
        return sorted(
            (info.path[len(self._root) + 1 :], info.size or 0)
            for info in infos
            if info.type == pafs.FileType.File and TEMP_SUFFIX.search(info.base_name)
        )

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


@dataclass
class StoreCheckpointer:
    """In-stage checkpoints of a single-process stage, kept in the stage's scratch space.

    The store is shared by every node, so a retried attempt on another
    worker finds the checkpoint of the one that died. Loads use
    ``weights_only=True`` like every other checkpoint.
    """

    store: ArtifactStore
    fingerprint: str
    name: str = "checkpoint.pt"

    def save(self, state: dict[str, Any], step: int) -> None:
        _check_checkpoint(self.name, state, "checkpoint")
        buffer = io.BytesIO()
        _torch().save(state, buffer)
        self.store.write_scratch(self.fingerprint, self.name, buffer.getvalue())
        logger.debug("checkpoint of %s at step %d", self.fingerprint[:12], step)

    def load(self) -> dict[str, Any] | None:
        data = self.store.read_scratch(self.fingerprint, self.name)
        if data is None:
            return None
        try:
            return _torch().load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: start the stage over rather than fail it
            logger.warning("ignoring unreadable checkpoint of %s (%s); starting over", self.fingerprint[:12], exc)
            return None

    def save_part(self, index: int, data: bytes) -> None:
        """One part file per index, renamed into place whole: a part that is there is complete."""
        self.store.write_scratch(self.fingerprint, part_name(index), data)

    def load_part(self, index: int) -> bytes | None:
        return self.store.read_scratch(self.fingerprint, part_name(index))


def part_name(index: int) -> str:
    """The scratch file of a stage's part ``index`` (``StageContext.save_part``): zero-padded, so they list in order."""
    if index < 0:
        raise ValueError(f"part index must be >= 0, got {index}")
    return f"part-{index:08d}"


def _serialize(name: str, value: Any) -> tuple[str, str, bytes]:
    """(kind, suffix, bytes) of a checkpoint; tables never get here (``_write_stream`` writes them)."""
    if isinstance(value, dict):
        _check_checkpoint(name, value, name)
        buffer = io.BytesIO()
        _torch().save(value, buffer)
        return "checkpoint", "pt", buffer.getvalue()
    raise ArtifactError(
        name,
        f"unsupported output type {type(value).__name__}; expected a pyarrow.Table, a pyarrow.RecordBatchReader "
        "or a dict of tensors/plain values",
        retryable=False,
    )


def _torch() -> Any:
    """torch, imported on the first checkpoint read or write.

    Why lazily: the driver validates configs, builds the DAG and reads manifests and tables,
    none of which needs torch; importing it cost the CLI 3 s (10 s on loaded cores) before
    anything else could start (tests/unit/pipelines/test_driver_imports.py).
    """
    import torch

    return torch


def _torch_leaves() -> tuple[type, ...]:
    torch = _torch()
    return (torch.Tensor, torch.dtype, torch.Size)


def _check_checkpoint(name: str, value: Any, where: str) -> None:
    """Refuse values torch.load(weights_only=True) could not read back, naming the key."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ArtifactError(name, f"{where}: key {key!r} must be str or int", retryable=False)
            _check_checkpoint(name, item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_checkpoint(name, item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN + _torch_leaves()):
        raise ArtifactError(
            name,
            f"{where} is a {type(value).__name__}, which torch.load(weights_only=True) cannot read; "
            "store tensors, numbers, strings, lists or dicts (e.g. model.state_dict())",
            retryable=False,
        )


def _manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    data = asdict(manifest)
    data["series"] = [[step, values] for step, values in manifest.series]
    return data


def _manifest_from_json(data: Mapping[str, Any]) -> Manifest:
    return Manifest(
        stage=data["stage"],
        fingerprint=data["fingerprint"],
        outputs={name: ArtifactRef(**ref) for name, ref in data["outputs"].items()},
        metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
        series=[(int(step), dict(values)) for step, values in data.get("series", [])],
        files=dict(data.get("files", {})),
        file_digests=dict(data.get("file_digests", {})),
        created=data.get("created", ""),
        duration_s=float(data.get("duration_s", 0.0)),
        node=str(data.get("node", "")),
    )
