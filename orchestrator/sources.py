"""Pretrained weights a config names, found on the driver before a run starts: a file, a registered model, a run's stage.

A training stage may start from weights outside the run (`init.source` of a pipeline file,
orchestrator.config.ModelSource). The driver turns the name into a ``ResolvedSource``: a location
every node can read (a local path, or any pyarrow URI such as s3://) and the sha256 of its bytes.
The pipeline puts both into the params of the stage that imports the weights, so that stage's
fingerprint changes exactly when the weights do (an alias moved to another version, a file
rewritten) and a rerun with the same weights is a cache hit.

- ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``: MLflow's model registry (Relay registers every
  model it logs under the pipeline's name, with aliases ``gen-NN`` and ``newest`` set when the run finishes), read with an
  explicit client against the config's tracking store; the checkpoint is the logged model's
  ``checkpoint.pt``, hashed here.
- ``run:RUN_ID/STAGE``: the run's ledger (in the artifact store) gives the stage's fingerprint, the manifest
  its checkpoint output (its location; its digest when the manifest used sha256, else hashed here).
- anything else is a file path or URI, hashed here.

A source that cannot be found raises ConfigError naming the key, before anything is written: a
missing MLflow store is reported, never created.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.config import ModelSource, RunSettings, TrackingSettings, artifact_uri, tracking_uri
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.filesystems import filesystem_from_uri
from orchestrator.engine.ledger import DONE_STATES, LEDGER_FILE, read_ledger, record_path
from orchestrator.errors import ArtifactError, ConfigError
from orchestrator.tracking.common import mlflow_client, sqlite_path

CHECKPOINT_FILE = "checkpoint.pt"  # the file a Relay logged model holds (orchestrator.tracking.lineage)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ResolvedSource:
    """Pretrained weights found: where to read them, the sha256 of their bytes, and what they are (for the log)."""

    source: str
    location: str
    digest: str
    detail: str


def resolve_source(text: str, run: RunSettings, tracking: TrackingSettings, key: str = "init.source") -> ResolvedSource:
    """Find the weights ``text`` names (see the module docstring); ConfigError naming ``key`` when they are not there."""
    try:
        source = ModelSource.parse(text)
        if source.kind == "registry":
            return _from_registry(source, tracking_uri(run, tracking))
        if source.kind == "run":
            return _from_run(source, ArtifactStore(artifact_uri(run)))
        return _from_file(source.name)
    except (ValueError, FileNotFoundError, ArtifactError) as exc:
        raise ConfigError([f"{key}: {exc}"]) from exc


def read_bytes(location: str) -> bytes:
    """The bytes at a resolved location (a local path or a pyarrow URI), for a check on the driver."""
    filesystem, path = _filesystem(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if "://" in location:
        try:  # S3 with bounded timeouts: a store that does not answer fails the check instead of hanging the driver
            return filesystem_from_uri(location)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(
                f"cannot read {location} ({exc}); copy the weights to a file or to the artifact store's storage"
            ) from exc
    return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())


def _from_file(location: str) -> ResolvedSource:
    filesystem, path = _filesystem(location)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"no weights file at {path}; give a path to a saved state dict or Relay checkpoint")
    where = path if isinstance(filesystem, pafs.LocalFileSystem) else location
    return ResolvedSource(location, where, _digest(where, info.mtime_ns, info.size), f"file {where}")


@functools.lru_cache(maxsize=16)
def _digest(location: str, mtime_ns: int | None, size: int | None) -> str:
    """sha256 of a file, once per (location, mtime, size) and process: a run builds its DAG more than once."""
    filesystem, path = _filesystem(location)
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_at(location: str) -> str:
    """``_digest`` of the file at ``location``, keyed by its current mtime and size."""
    filesystem, path = _filesystem(location)
    info = filesystem.get_file_info(path)
    return _digest(location, info.mtime_ns, info.size)


def _from_run(source: ModelSource, store: ArtifactStore) -> ResolvedSource:
    ledger = read_ledger(store, source.name)
    if ledger is None:
        raise FileNotFoundError(
            f"no run {source.name!r} in the artifact store {store.uri} (no {record_path(source.name, LEDGER_FILE)}); "
            "name a run of this store, or set run.artifact_uri to the store the run wrote to"
        )
    stages = ledger.get("stages", {})
    entry = stages.get(source.version)
    if entry is None:
        raise ValueError(f"run {source.name!r} has no stage {source.version!r}; its stages: {', '.join(stages)}")
    if entry.get("state") not in DONE_STATES or not entry.get("fingerprint"):
        raise ValueError(
            f"stage {source.version!r} of run {source.name!r} is {entry.get('state')}; finish it first "
            f"(relay resume {source.name})"
        )
    manifest = store.read_manifest(entry["fingerprint"])
    if manifest is None:
        raise FileNotFoundError(
            f"the outputs of {source.version!r} of run {source.name!r} are gone from {store.uri}; "
            f"rerun it (relay resume {source.name})"
        )
    checkpoints = [ref for ref in manifest.outputs.values() if ref.kind == "checkpoint"]
    if len(checkpoints) != 1:
        raise ValueError(
            f"stage {source.version!r} of run {source.name!r} wrote {len(checkpoints)} checkpoints, expected one model; "
            "name a train stage"
        )
    ref = checkpoints[0]
    location = store.location(ref.path)
    # the manifest's digest may be xxh3 (orchestrator.engine.digests); the import stage checks sha256
    digest = ref.digest if ref.algorithm == "sha256" else _sha256_at(location)
    return ResolvedSource(str(source), location, digest, f"{ref.name} of run {source.name}")


def _from_registry(source: ModelSource, uri: str) -> ResolvedSource:
    database = sqlite_path(uri)
    if database is not None and not database.exists():
        raise FileNotFoundError(f"no MLflow store at {database}, so no registered model {source.name!r}")
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    try:
        if source.version is not None and source.version.isdigit():
            version = client.get_model_version(source.name, source.version)
        else:
            version = client.get_model_version_by_alias(source.name, source.version)
    except MlflowException as exc:
        raise ValueError(
            f"no {source} in the model registry at {uri} ({exc.message}); open `relay ui` to see the registered "
            "models and their aliases"
        ) from exc
    base = version.source
    if getattr(version, "model_id", None):
        base = client.get_logged_model(version.model_id).artifact_location
    location = f"{base.rstrip('/')}/{CHECKPOINT_FILE}"
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    filesystem, path = _filesystem(location)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{source} (version {version.version}) has no {CHECKPOINT_FILE} at {location}")
    # the sha256 the import stage checks; the model's relay.digest tag is the artifact store's algorithm
    digest = _digest(location, info.mtime_ns, info.size)
    return ResolvedSource(str(source), location, digest, f"{source.name} version {version.version}")
