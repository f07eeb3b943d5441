"""What the CLI checks before its first write: run ids, folders, the artifact store's URI, --stop-after.

Bad input exits 2 with nothing written: no mlflow.db, no mlartifacts/, no run record, no
artifact. A command's first write (the run record, the tracker's database, the store) comes
after every path and name it will write to has been checked here: a run id that would leave
the workspace, a folder that is a file or cannot be written, an artifact URI pyarrow cannot
open, a stage that does not exist. Nothing here creates a file or a folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.sweeps.sweep_names import check_run_id_free
from orchestrator.cli.temporary import impermanence
from orchestrator.config import (
    ARTIFACT_URI_ENV,
    TRACKING_URI_ENV,
    WORKSPACE_ENV,
    RunSettings,
    TrackingSettings,
    artifact_uri,
    resolve_workspace,
    workspace_setting,
)
from orchestrator.config.values import name_problem
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RunStatus, record_path
from orchestrator.errors import ConfigError, RelayError
from orchestrator.tracking.common import half_made_store_problem, sqlite_path

log = logging.getLogger(__name__)

URI_EXAMPLES = (
    "a local folder, or a pyarrow filesystem URI such as file:///data/relay, s3://bucket/relay, gs://bucket/relay"
)


def check_run_id(run_id: str, what: str = "run id") -> None:
    """A run id becomes ``runs/<id>/``: one safe path segment, or exit 2."""
    problem = name_problem(run_id, what)
    if problem:
        raise ConfigError([problem], "the command line")


def check_new_run(store: ArtifactStore, run_id: str, run: RunSettings | None = None) -> None:
    """``relay run --run-id X`` must not reuse a run's id: its record and ledger would be overwritten; nor a sweep's
    name, which the commands that take either would then read as one of the two (``sweep_names``): ``run``, the
    run's settings, says where its workspace's sweeps are."""
    if store.read_record(record_path(run_id, CONFIG_FILE)) is not None:
        raise ConfigError(
            [f"--run-id: a run {run_id!r} already exists in {store.uri}; {_way_on(store, run_id)}"], "the command line"
        )
    if run is not None:
        check_run_id_free(store, run, run_id)


def _way_on(store: ArtifactStore, run_id: str) -> str:
    """What to do instead of reusing ``run_id``: finish the run it names, unless it has finished, when a resume
    would only check it (as `relay submit --run-id` says): then another id is the one way on."""
    if run_status(store, run_id) is RunStatus.FINISHED:
        return "it has finished: pick another id (or leave --run-id out for a new one)"
    return f"finish it with `relay resume {run_id}`, or pick another id (or leave --run-id out for a new one)"


def file_not_folder_problem(folder: Path, key: str) -> str | None:
    """A folder setting that names a file: said plainly, before anything tries to read or write in it."""
    if folder.exists() and not folder.is_dir():
        return f"{key}: {folder} is a file, not a folder; point {key} at a folder"
    return None


def folder_problem(path: str | Path, key: str) -> str | None:
    """Why ``path`` cannot be, or become, a folder this process writes in; None when it can.

    Nothing is created: the nearest existing ancestor must be a folder we may write in.
    """
    try:
        if "\x00" in str(path):
            raise ValueError("it holds a NUL character")
        folder = Path(path).expanduser().absolute()
        if is_a_file := file_not_folder_problem(folder, key):
            return f"{is_a_file} (it is created if missing)"
        existing = next(p for p in (folder, *folder.parents) if p.exists())
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: `~user` without such a user
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{key}: {str(path)[:200]!r} cannot be a folder ({reason}); use a plain folder path"
    if not existing.is_dir():
        return f"{key}: {existing} is a file, so {folder} cannot be a folder; point {key} elsewhere"
    if not os.access(existing, os.W_OK | os.X_OK) and existing == folder:
        return f"{key}: cannot write in {folder} (read-only); make it writable or pick a folder you can write in"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}: cannot write in {existing}, so {folder} cannot be made there; pick a folder you can write in"
    return None


def workspace_key(run: RunSettings) -> str:
    """How the user named the workspace, for messages: the setting, the variable, or the default."""
    if run.workspace:
        return "run.workspace"
    return f"${WORKSPACE_ENV}" if os.environ.get(WORKSPACE_ENV) else "the default workspace (./relay-workspace)"


def location_problems(
    run: RunSettings, tracking: TrackingSettings, local: bool = True, writes: bool = True
) -> list[str]:
    """Every problem with where a run would write: the workspace, the artifact store, the tracking store.

    Checked as resolved, so a store named by RELAY_ARTIFACT_URI or MLFLOW_TRACKING_URI is checked
    like one in the config, and the message names the variable. ``local`` False (``relay submit``:
    the paths are the cluster's) checks only what does not depend on this machine's files: that
    pyarrow can open the artifact URI and that MLflow knows the tracking URI's scheme. ``writes`` False
    (a command that only reads a run, `relay generations`): folders this user may read but not write in are
    fine; a workspace of another user, or a shared read-only copy, was refused with "cannot write in".
    """
    workspace = folder_problem(workspace_setting(run), workspace_key(run)) if local and writes else None
    problems = [workspace]
    tracking_key, tracking_value = _setting(tracking.uri, "tracking.uri", TRACKING_URI_ENV)
    if tracking_value:
        problems.append(tracking_uri_problem(tracking_value, tracking_key, local, writes))
    elif local and workspace is None:
        problems.append(_database_problem(resolve_workspace(run) / "mlflow.db", workspace_key(run), writes))
    store_key, store_value = _setting(run.artifact_uri, "run.artifact_uri", ARTIFACT_URI_ENV)
    if store_value:
        problems.append(artifact_uri_problem(store_value, local and writes, store_key))
    if local and writes and not any(problems):
        problems.append(store_folders_problem(artifact_uri(run), store_key if store_value else workspace_key(run)))
    return [problem for problem in problems if problem]


def store_folders_problem(
    uri: str, key: str, within: tuple[str, ...] | None = None, doing: str = "write in"
) -> str | None:
    """Why this user cannot write in the local store at ``uri`` that already exists (or in a folder directly in it:
    runs/, stages/); None when it can, or the store is remote or not there yet. ``within``: only these folders of
    it matter (`relay gc` removes only in stages/ and the Ray Train folder). ``doing``: what the command would do
    there, as the message says it (`relay delete`: "remove files in").

    Why: ``folder_problem`` checks the folder a store would be made in, not one that exists; a store of
    another user (runs/ not writable) failed at the run record's first write (exit 1), after the run's start
    was logged, or, with only stages/ closed, at the first stage's output.
    """
    if "://" in uri and not uri.startswith("file://"):
        return None
    folder = Path(uri.removeprefix("file://")).expanduser()
    try:
        if not folder.is_dir():
            return None
        blocked = first_closed(folder, os.R_OK | os.W_OK | os.X_OK, within)
    except OSError:  # a folder this user may not list
        blocked = folder
    if blocked is None:
        return None
    return (
        f"{key}: cannot {doing} the artifact store {folder}: this user may not write in {blocked}; give it access "
        f"(chmod -R u+rwX {blocked}), or point {key} at another store"
    )


def first_closed(folder: Path, access: int, within: tuple[str, ...] | None = None) -> Path | None:
    """The first of ``folder`` and the folders directly in it (``within``: only the folders in it so named) that this
    user lacks ``access`` to (``os.access``'s mode), None when none; OSError where ``folder`` cannot be listed."""
    inside = [path for path in folder.iterdir() if path.is_dir() and (within is None or path.name in within)]
    checked = inside if within is not None else [folder, *inside]
    return next((path for path in checked if not os.access(path, access)), None)


def _setting(value: str | None, key: str, variable: str) -> tuple[str, str | None]:
    """(how the user named it, the value): the config's setting, else the environment variable."""
    if value:
        return key, value
    return f"${variable}", os.environ.get(variable) or None


# MLflow's tracking store schemes (mlflow.tracking._tracking_service.utils registers these); a
# database one may carry a driver (postgresql+psycopg2://).
TRACKING_SCHEMES = (
    "",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
)
TRACKING_FORMS = "sqlite:///PATH/mlflow.db, http://HOST:5000 (an MLflow server) or a database URL (postgresql://...)"
SQLITE_HEADER = b"SQLite format 3\x00"


def tracking_uri_problem(uri: str, key: str, local: bool = True, writes: bool = True) -> str | None:
    """Why MLflow could not track to ``uri``: an unknown scheme, a malformed sqlite URI, a file that is no database.

    ``writes`` False (a command that only reads, `relay generations`): a database in a folder this
    process may not write in is fine.
    """
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        return f"{key}: MLflow has no tracking store for {uri!r} (scheme {scheme!r}); use {TRACKING_FORMS}"
    if scheme in ("", "file") and not _file_store_allowed():
        folder = uri.removeprefix("file://").rstrip("/")
        return (
            f"{key}: {uri!r} is a folder path, MLflow's file store, which MLflow 3 refuses ('in maintenance "
            f"mode'); use sqlite:///PATH/mlflow.db, e.g. {_sqlite_example(folder, local)} "
            "(or set MLFLOW_ALLOW_FILE_STORE=true to keep the file store)"
        )
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
        return f"{key}: {uri!r} names no database file; write sqlite:/// and the path, e.g. sqlite:///ws/mlflow.db"
    db = sqlite_path(uri)
    if db is None or not local:
        return None
    return (folder_problem(db.parent, key) if writes else None) or _database_problem(db, key, writes)


def _sqlite_example(folder: str, local: bool) -> str:
    """A sqlite URI to use instead of the file store ``folder``: beside it, unless a cluster run could not keep it.

    Why: `relay submit tracking.uri=file:///tmp/mlruns` was told to use sqlite:////tmp/mlruns/mlflow.db,
    which the next check refuses (a job's stores must outlive it, and /tmp is each node's own). The check is the
    one `relay submit` refuses with (``temporary.impermanence``): $TMPDIR, Ray's session folders, symlinks into
    either and relative paths (resolved in the job's working folder) count too.
    """
    if local or impermanence(folder) is None:
        return f"sqlite:///{folder}/mlflow.db"
    return "sqlite:////mnt/relay/mlflow.db (a folder every node of the cluster mounts, outside temporary folders)"


def _file_store_allowed() -> bool:
    """Whether MLflow will open a folder as its tracking store: MLflow 3 raises unless MLFLOW_ALLOW_FILE_STORE is true.

    Why checked here: MLflow raised only when the run's tracker opened the store, and tracking
    failures are not fatal (``tracking.strict``), so the run finished with exit 0 and tracked nothing.
    """
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")


def _database_problem(db: Path, key: str, writes: bool = True) -> str | None:
    """A sqlite tracking database must be a SQLite file (or not exist yet), not a folder or another file; one a
    command ``writes`` in, a file this user may write (read-only, the run went on untracked: "The MLflow record
    of run RUN is incomplete", exit 0)."""
    try:
        if db.is_dir():
            return f"{key}: {db} is a folder, not a database file; use sqlite:///{db}/mlflow.db"
        if not db.is_file() or db.stat().st_size == 0:
            return None
        with db.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except PermissionError:  # the file, or a folder above it (chmod 700 of another user's workspace)
        return (
            f"{key}: this user may not open the tracking database {db} (permission denied, on the file or a folder "
            "above it); MLflow reads and writes it: give this user access (chmod u+rw on the file, u+rwx on its "
            "folders), or point the tracking store at another file"
        )
    except (OSError, ValueError) as exc:
        return f"{key}: {str(db)[:200]!r} cannot be a database file ({exc}); use sqlite:///PATH/mlflow.db"
    if header != SQLITE_HEADER:
        return (
            f"{key}: {db} is not an SQLite database (MLflow could not open it); move it away, "
            "or point the tracking store at another file"
        )
    broken = half_made_store_problem(db)  # a half-made store fails every MLflow call: the run would track nothing
    if broken:
        return f"{key}: {broken}"
    if writes and not os.access(db, os.W_OK):
        return (
            f"{key}: this user may not write in the tracking database {db} (read-only), where MLflow records the "
            f"run; give this user write access (chmod u+w {db}), or point the tracking store at another file"
        )
    return None


def artifact_uri_problem(uri: str, local: bool = True, key: str = "run.artifact_uri", warn: bool = True) -> str | None:
    """Whether the store can live at ``uri``: a writable local folder, or a URI pyarrow opens (nothing written).

    A URI pyarrow cannot parse, or whose filesystem is unknown or needs a missing package,
    is bad input. One it parses but cannot reach yet (no network, no credentials) is not: that
    shows when the run opens the store, as a storage failure. ``warn`` False: the caller reports
    reachability itself (``run_locations.store_problem``), so the warning is not given twice.
    """
    if "://" not in uri:
        return folder_problem(uri, key) if local else None
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except (ValueError, ImportError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        return f"{key}: pyarrow cannot open {uri!r} ({exc}); use {URI_EXAMPLES}"
    except OSError as exc:  # first line only: pyarrow's hdfs adds a page of libjvm search paths
        if warn:
            reason = (str(exc).strip().splitlines() or [""])[0]
            log.warning("%s %s is not reachable from here (%s); the run will need it", key, uri, reason)
        return None
    if local and isinstance(filesystem, pafs.LocalFileSystem):
        return folder_problem(root, key)
    return None


def open_store(uri: str, key: str = "run.artifact_uri", source: str | None = None) -> ArtifactStore:
    """The artifact store at ``uri``, opened before anything is written; bad URIs exit 2, unreachable ones 1.

    ``key`` and ``source``: how the user named the store (`--artifact-uri` on the command line), for the message.
    """
    try:
        return ArtifactStore(uri)
    except (ValueError, ImportError) as exc:
        raise ConfigError([f"{key}: pyarrow cannot open {uri!r} ({exc}); use {URI_EXAMPLES}"], source) from exc
    except OSError as exc:
        raise RelayError(f"cannot reach the artifact store at {uri}: {exc}; check the address and credentials") from exc


def check_stop_after(pipeline: Any, stop_after: str | None) -> None:
    """``--stop-after`` must name a stage of the pipeline (PipelineError, exit 2, names the valid ones)."""
    if stop_after is not None:
        pipeline.stage(stop_after)
