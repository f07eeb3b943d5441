"""Where a run writes, checked before it writes: its stores answer, and a cluster run's results outlive the cluster.

A run writes to two places, the artifact store (stage outputs and the run record) and the
tracking store (MLflow). Both are resolved from settings (``run.artifact_uri``,
``tracking.uri``), the environment (RELAY_ARTIFACT_URI, MLFLOW_TRACKING_URI) or, by default,
the workspace (``run.workspace``, RELAY_WORKSPACE, ./relay-workspace). Two checks:

- Reachable: a remote store (``s3://...``) answers and its bucket exists; a tracking server
  (``http://...``) answers. A wrong setting is found here, not after the first stage.
- Durable (`relay submit`, and `relay run`/`relay resume` inside a Ray job): nothing a user
  needs afterwards may land in a temporary folder or in Ray's per-session folders. A job runs
  in its uploaded working folder under Ray's session folder, so a relative workspace (the
  default) puts every result where Ray deletes it with the cluster; /tmp is node-local and
  cleared on reboot, and other temporary folders (/var/tmp, $TMPDIR) are node-local and may be
  cleaned by the system. A path is checked as written and as it resolves through symlinks
  (``temporary.impermanence``).

Whether the Ray cluster a driver joins answers is ``cluster_join``'s; whether a run's stages fit
where its Ray is, ``cluster_fit``'s. Every problem is a ``key: what; fix`` line of one ConfigError (exit 2).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.cli import temporary
from orchestrator.cli.preflight import artifact_uri_problem
from orchestrator.config import (
    ARTIFACT_URI_ENV,
    DEFAULT_WORKSPACE,
    TRACKING_URI_ENV,
    WORKSPACE_ENV,
    artifact_uri,
    current_directory,
    tracking_uri,
)
from orchestrator.engine.store_faults import StoreFault, store_failure, store_fault
from orchestrator.errors import ConfigError
from orchestrator.tracking.common import relocated_artifacts, sqlite_path

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 20.0
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for the entrypoint it starts
SHARED_EXAMPLE = "/mnt/relay"
STORE_FIX = (
    f"set RELAY_WORKSPACE to a folder every node mounts (e.g. {SHARED_EXAMPLE}), or "
    "run.artifact_uri=s3://BUCKET/PREFIX (or RELAY_ARTIFACT_URI)"
)
TRACKING_FIX = (
    f"set tracking.uri=http://MLFLOW-SERVER:5000 (or {TRACKING_URI_ENV}), or RELAY_WORKSPACE to a folder "
    f"every node mounts (e.g. {SHARED_EXAMPLE})"
)


WORKSPACE_KEYS = ("run.workspace", "--workspace", f"${WORKSPACE_ENV}")  # the settings that name a workspace


@dataclass(frozen=True)
class Locations:
    """Where a run writes: the artifact store root (run records included) and the MLflow tracking URI.

    ``store_key`` / ``tracking_key``: the setting that chose each (a store inside a workspace: the one that named
    the workspace, such as ``--workspace``), so that a refusal names what the user set.
    """

    store: str
    tracking: str | None  # None: not known here (a run record on a mount this machine does not see)
    store_key: str = "run.artifact_uri"
    tracking_key: str = "tracking.uri"
    experiment: str | None = None  # the MLflow experiment it tracks into; None: not checked (``moved_store_problem``)


def in_ray_job() -> bool:
    """True in the entrypoint of a Ray job (Ray sets the job's config variable, and the working folder
    is an upload under the session folder)."""
    working = current_directory()  # None in a deleted folder, which is no job's working folder
    return RAY_JOB_ENV in os.environ or (working is not None and "runtime_resources" in working.parts)


def resolved_locations(config: Any) -> Locations:
    """Where this process will write, paths made absolute here, with the setting that chose each store.

    A store named by RELAY_ARTIFACT_URI or MLFLOW_TRACKING_URI is keyed by that variable, so that a
    refusal names what the user set; a store in the workspace keeps the config's key, as before.
    """
    tracking = tracking_uri(config.run, config.tracking)
    store_key = env_key(config.run.artifact_uri, ARTIFACT_URI_ENV, "run.artifact_uri")
    tracking_key = env_key(config.tracking.uri, TRACKING_URI_ENV, "tracking.uri")
    return Locations(artifact_uri(config.run), tracking, store_key, tracking_key, config.tracking.experiment)


def env_key(setting: str | None, variable: str, key: str) -> str:
    """``$VARIABLE`` when the environment variable, not the config's ``key``, names a store; else ``key``."""
    return f"${variable}" if not setting and os.environ.get(variable) else key


def submitted_locations(config: Any, flags: Mapping[str, str] | None = None) -> Locations:
    """Where a job will write, as this shell's settings say, relative paths left relative, with the setting that
    chose each.

    A relative path is resolved on the cluster, inside the job's working folder: it cannot be
    made absolute here. ``flags``: `relay submit`'s --workspace / --artifact-uri, as the
    variables the job gets (RELAY_WORKSPACE, RELAY_ARTIFACT_URI): below the config, above this shell.
    """
    flags = flags or {}
    workspace, workspace_key = _first_given(
        [
            (config.run.workspace, "run.workspace"),
            (flags.get(WORKSPACE_ENV), "--workspace"),
            (os.environ.get(WORKSPACE_ENV), f"${WORKSPACE_ENV}"),
        ],
        (DEFAULT_WORKSPACE, None),
    )
    store, store_key = _first_given(
        [
            (config.run.artifact_uri, "run.artifact_uri"),
            (flags.get(ARTIFACT_URI_ENV), "--artifact-uri"),
            (os.environ.get(ARTIFACT_URI_ENV), f"${ARTIFACT_URI_ENV}"),
        ],
        (f"{workspace}/artifacts", workspace_key or "run.artifact_uri"),
    )
    tracking, tracking_key = _first_given(
        [(config.tracking.uri, "tracking.uri"), (os.environ.get(TRACKING_URI_ENV), f"${TRACKING_URI_ENV}")],
        (f"sqlite:///{workspace}/mlflow.db", workspace_key or "tracking.uri"),
    )
    return Locations(store, tracking, store_key or "run.artifact_uri", tracking_key or "tracking.uri")


def _first_given(settings: list[tuple[str | None, str]], default: tuple[str, str | None]) -> tuple[str, str | None]:
    """(value, key) of the first setting given, in the order they rank; ``default`` when none is."""
    return next(((value, key) for value, key in settings if value), default)


def local_path(uri: str) -> str | None:
    """The filesystem path behind a store or tracking URI, None for a remote one (s3://, http://)."""
    for prefix in ("sqlite:///", "file://"):
        if uri.startswith(prefix):
            return uri[len(prefix) :]
    return None if "://" in uri or uri == "databricks" else uri


def store_fix(key: str) -> str:
    """How to put the artifact store where it outlives the cluster, naming ``key``, the setting that chose it."""
    if key in WORKSPACE_KEYS:
        return (
            f"point {key} at a folder every node mounts (e.g. {SHARED_EXAMPLE}), or set "
            f"run.artifact_uri=s3://BUCKET/PREFIX (or {ARTIFACT_URI_ENV})"
        )
    if key == "run.artifact_uri":
        return STORE_FIX
    return f"point {key} at s3://BUCKET/PREFIX or at a folder every node mounts (e.g. {SHARED_EXAMPLE}/artifacts)"


def tracking_fix(key: str) -> str:
    """How to put the tracking store where it outlives the cluster, naming ``key``, the setting that chose it."""
    if key in WORKSPACE_KEYS:
        return (
            f"set tracking.uri=http://MLFLOW-SERVER:5000 (or {TRACKING_URI_ENV}), or point {key} at a folder "
            f"every node mounts (e.g. {SHARED_EXAMPLE})"
        )
    if key == "tracking.uri":
        return TRACKING_FIX
    return (
        f"point {key} at an MLflow server (http://MLFLOW-SERVER:5000) or at a database in a folder every node "
        f"mounts (sqlite:///{SHARED_EXAMPLE}/mlflow.db)"
    )


def durability_problems(locations: Locations) -> list[str]:
    """One line per store that would land in a temporary or per-session folder, with the setting to change."""
    problems = []
    checks = (
        (
            locations.store_key,
            "artifact store (stage outputs, run records)",
            locations.store,
            store_fix(locations.store_key),
        ),
        (locations.tracking_key, "MLflow tracking store", locations.tracking, tracking_fix(locations.tracking_key)),
    )
    for key, what, uri, fix in checks:
        if uri is None:
            continue
        path = local_path(uri)
        why = None if path is None else temporary.impermanence(path)
        if why is not None:
            problems.append(f"{key}: the {what} {uri} would be {why}; {fix}")
    return problems


def check_durable(locations: Locations, source: str | None = None) -> None:
    """Refuse (exit 2) a cluster run whose results would not outlive the cluster."""
    problems = durability_problems(locations)
    if problems:
        raise ConfigError(problems, source)


# --- reachability ------------------------------------------------------------------------------


def _bounded(action: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    """(finished, result or exception) of ``action`` run on a daemon thread for at most ``timeout_s``.

    A daemon thread, so a probe stuck on a firewalled endpoint never keeps the process alive.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(action())
        except Exception as exc:  # reported by the caller, with the setting to fix
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="relay-probe")
    thread.start()
    thread.join(timeout_s)
    return (bool(outcome), outcome[0] if outcome else None)


def store_problem(uri: str, timeout_s: float = PROBE_TIMEOUT_S, key: str = "run.artifact_uri") -> str | None:
    """Why the remote store at ``uri`` cannot be used from here (unknown scheme, refused credentials, no
    answer, no bucket), or None.

    ``key`` is how the user named the store (a setting, a flag or a variable), for the message.
    """
    if local_path(uri) is not None:
        return None
    unknown = artifact_uri_problem(uri, local=False, key=key, warn=False)  # a scheme pyarrow does not know
    if unknown:
        return unknown
    import pyarrow.fs as pafs

    def bucket_info() -> tuple[str, Any]:
        fs, root = pafs.FileSystem.from_uri(uri)
        bucket = root.split("/", 1)[0]
        return bucket, fs.get_file_info(bucket)

    finished, answer = _bounded(bucket_info, timeout_s)
    if finished and isinstance(answer, Exception) and store_fault(answer) is StoreFault.DENIED:
        return f"{key}: {store_failure(uri, answer)}"
    if not finished or isinstance(answer, Exception):
        detail = f"no answer within {timeout_s:g} s" if not finished else str(answer).splitlines()[0]
        return (
            f"{key}: the store {uri} does not answer from this machine ({detail}); check the endpoint "
            "(AWS_ENDPOINT_URL for an S3-compatible server), the network and the credentials"
        )
    bucket, info = answer
    if info.type == pafs.FileType.NotFound:
        return f"{key}: the bucket {bucket!r} of {uri} does not exist; create it first (e.g. `aws s3 mb s3://{bucket}`)"
    return None


def tracking_problem(uri: str, timeout_s: float = 5.0, key: str = "tracking.uri") -> str | None:
    """Why the MLflow tracking server at an http(s) ``uri`` cannot be used, or None (other stores: None).

    ``key`` is how the user named the server (``tracking.uri`` or $MLFLOW_TRACKING_URI), for the message.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    to_fix = f"tracking.uri / {TRACKING_URI_ENV}" if key == "tracking.uri" else key
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.exceptions.RequestException as exc:
        return (
            f"{key}: no MLflow tracking server answers at {uri} ({type(exc).__name__}); start one "
            f"(mlflow server --host 0.0.0.0 --port 5000) or fix {to_fix}"
        )
    if response.status_code != 200:
        return f"{key}: {uri} answers {response.status_code} at /health, not as an MLflow tracking server; fix {to_fix}"
    return None


def check_reachable(locations: Locations, source: str | None = None) -> None:
    """Refuse (exit 2) a remote store or tracking server that cannot be used, before anything is written."""
    problems = [
        store_problem(locations.store, key=locations.store_key),
        tracking_problem(locations.tracking or "", key=locations.tracking_key),
        moved_store_problem(locations),
    ]
    problems = [problem for problem in problems if problem]
    if problems:
        raise ConfigError(problems, source)


def moved_store_problem(locations: Locations) -> str | None:
    """Why a run must not track into a SQLite store moved or copied from another folder, or None.

    MLflow keeps each experiment's artifact location as an absolute path in the store, and its client
    cannot change it (``tracking.common.relocated_artifacts``): a new run of the experiment in a moved
    workspace wrote its MLflow artifacts (plots, config, model checkpoints) under the old folder,
    creating it again, and in a copy into the original's. So the run is refused before anything is
    written; a new experiment in that store gets a location of its own, beside it.
    """
    db = sqlite_path(locations.tracking or "")
    if db is None or locations.experiment is None:
        return None
    elsewhere = relocated_artifacts(db, locations.experiment)
    if elsewhere is None:
        return None
    old = elsewhere.parent
    copied = (old / db.name).exists()
    back = f"run in the original, {old}" if copied else f"move the workspace back to {old} and run there"
    return (
        f"{locations.tracking_key}: the MLflow store {db} was {'copied' if copied else 'moved'} from {old}, and "
        f"its experiment {locations.experiment!r} keeps its artifacts at {elsewhere} (MLflow stores that path "
        f"absolute), so this run's plots, config and models would be written there, outside {db.parent}. To fix: "
        f"{back}; start the run in a new workspace (RELAY_WORKSPACE=NEW_FOLDER or run.workspace=NEW_FOLDER); "
        "or track into a new experiment of this store (tracking.experiment=NAME)"
    )
