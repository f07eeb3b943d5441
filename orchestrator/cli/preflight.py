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

from orchestrator.config import WORKSPACE_ENV, RunSettings, TrackingSettings, name_problem, workspace_setting
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import ConfigError, RelayError
from orchestrator.tracking.common import sqlite_path

log = logging.getLogger(__name__)

URI_EXAMPLES = (
    "a local folder, or a pyarrow filesystem URI such as file:///data/relay, s3://bucket/relay, gs://bucket/relay"
)


def check_run_id(run_id: str, what: str = "run id") -> None:
    """A run id becomes ``runs/<id>/``: one safe path segment, or exit 2."""
    problem = name_problem(run_id, what)
    if problem:
        raise ConfigError([problem], "the command line")


def folder_problem(path: str | Path, key: str) -> str | None:
    """Why ``path`` cannot be, or become, a folder this process writes in; None when it can.

    Nothing is created: the nearest existing ancestor must be a folder we may write in.
    """
    try:
        if "\x00" in str(path):
            raise ValueError("it holds a NUL character")
        folder = Path(path).expanduser().absolute()
        if folder.exists() and not folder.is_dir():
            return f"{key}: {folder} is a file, not a folder; point {key} at a folder (it is created if missing)"
        existing = next(p for p in (folder, *folder.parents) if p.exists())
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: `~user` without such a user
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{key}: {str(path)[:200]!r} cannot be a folder ({reason}); use a plain folder path"
    if not existing.is_dir():
        return f"{key}: {existing} is a file, so {folder} cannot be a folder; point {key} elsewhere"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}: cannot write in {existing}, so {folder} cannot be made there; pick a folder you can write in"
    return None


def workspace_key(run: RunSettings) -> str:
    """How the user named the workspace, for messages: the setting, the variable, or the default."""
    if run.workspace:
        return "run.workspace"
    return f"${WORKSPACE_ENV}" if os.environ.get(WORKSPACE_ENV) else "the default workspace (./relay-workspace)"


def location_problems(run: RunSettings, tracking: TrackingSettings, local: bool = True) -> list[str]:
    """Every problem with where a run would write: the workspace, the artifact store, the tracking database.

    ``local`` False (``relay submit``: the paths are the cluster's) checks only what does not
    depend on this machine's files: that pyarrow can open the artifact URI.
    """
    problems = []
    if local:
        problems.append(folder_problem(workspace_setting(run), workspace_key(run)))
        db = sqlite_path(tracking.uri) if tracking.uri else None
        if db is not None:
            problems.append(folder_problem(db.parent, "tracking.uri") or _database_problem(db))
    if run.artifact_uri:
        problems.append(artifact_uri_problem(run.artifact_uri, local))
    return [problem for problem in problems if problem]


def _database_problem(db: Path) -> str | None:
    """A sqlite tracking database must be a file (or not exist yet), not a folder."""
    try:
        is_folder = db.is_dir()
    except (OSError, ValueError) as exc:
        return f"tracking.uri: {str(db)[:200]!r} cannot be a database file ({exc}); use sqlite:///PATH/mlflow.db"
    return f"tracking.uri: {db} is a folder, not a database file; use sqlite:///{db}/mlflow.db" if is_folder else None


def artifact_uri_problem(uri: str, local: bool = True) -> str | None:
    """Whether the store can live at ``uri``: a writable local folder, or a URI pyarrow opens (nothing written).

    A URI pyarrow cannot parse, or whose filesystem is unknown or needs a missing package,
    is bad input. One it parses but cannot reach yet (no network, no credentials) is not: that
    shows when the run opens the store, as a storage failure.
    """
    if "://" not in uri:
        return folder_problem(uri, "run.artifact_uri") if local else None
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except (ValueError, ImportError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        return f"run.artifact_uri: pyarrow cannot open {uri!r} ({exc}); use {URI_EXAMPLES}"
    except OSError as exc:
        log.warning("run.artifact_uri %s is not reachable from here (%s); the run will need it", uri, exc)
        return None
    if local and isinstance(filesystem, pafs.LocalFileSystem):
        return folder_problem(root, "run.artifact_uri")
    return None


def open_store(uri: str) -> ArtifactStore:
    """The artifact store at ``uri``, opened before anything is written; bad URIs exit 2, unreachable ones 1."""
    try:
        return ArtifactStore(uri)
    except (ValueError, ImportError) as exc:
        raise ConfigError([f"run.artifact_uri: pyarrow cannot open {uri!r} ({exc}); use {URI_EXAMPLES}"]) from exc
    except OSError as exc:
        raise RelayError(f"cannot reach the artifact store at {uri}: {exc}; check the address and credentials") from exc


def check_stop_after(pipeline: Any, stop_after: str | None) -> None:
    """``--stop-after`` must name a stage of the pipeline (PipelineError, exit 2, names the valid ones)."""
    if stop_after is not None:
        pipeline.stage(stop_after)
