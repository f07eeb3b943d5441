"""The working folder a Ray job uploads: what it leaves out, and Ray's own lines about packing it.

Ray refuses an upload over 100 MiB (413), and packs whatever the project folder holds: local
environments, databases, Relay workspaces of other runs, a Ray temp dir started inside it. Each is
left out here by name or by its content, and a refused upload names its largest folders.

Apart from ``submit`` (the job request and its entrypoint) because it reads the local disk, not
the cluster; ``orchestrator.cli.temporary`` asks ``RAY_SESSION`` too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# A session folder Ray makes in its temp dir (session_<date>_<time>_<pid>), or session_latest, Ray's link to the
# newest one: a path through either is deleted with the session.
RAY_SESSION = re.compile(r"^session_(?:latest$|\d{4}-\d{2}-\d{2}_)")

# Never upload these with the working_dir: local environments, local run
# outputs and databases are large and meaningless on the cluster. A sqlite store
# comes with side files (its .lock, SQLite's journal, WAL and shared-memory files)
# and, beside it, the folder where Relay keeps its MLflow artifacts
# (orchestrator.tracking.common.ARTIFACTS_FOLDER, which this layer may not import).
WORKING_DIR_EXCLUDES = [
    ".venv",
    "relay-workspace",
    ".git",
    "benchmarks/results",
    "*.db",
    "*.db.lock",
    "*.db-journal",
    "*.db-wal",
    "*.db-shm",
    "mlartifacts",
    "mlruns",
    "__pycache__",
    ".pytest_cache",
]


def inside_excludes(working_dir: str, paths: Iterable[str | None]) -> list[str]:
    """``/REL`` for each of ``paths`` inside ``working_dir``: Ray excludes, anchored at the upload's root.

    A shared workspace or Ray's temp folder kept in the project folder would otherwise be uploaded
    with the code and push the request over Ray's 100 MiB limit (413). The leading ``/`` keeps a
    pattern from matching a same-named folder deeper in the code; the folder itself is never excluded.
    """
    root = Path(working_dir).expanduser().resolve()
    excludes = []
    for path in paths:
        if not path:
            continue
        resolved = (root / Path(path).expanduser()).resolve()
        if resolved != root and root in resolved.parents:
            excludes.append("/" + resolved.relative_to(root).as_posix())
    return sorted(set(excludes))


def workspaces_inside(working_dir: str, depth: int = 2) -> list[str]:
    """Relay workspaces (a folder holding ``artifacts/runs``) up to ``depth`` levels inside ``working_dir``.

    Why: only the workspace and stores of this submission were left out of the upload, so a
    project folder holding the workspaces of other runs (checkpoints of 40 MB each) went over
    Ray's 100 MiB limit. Hidden folders and those already excluded by name are not searched.
    """
    return folders_inside(working_dir, lambda folder: (folder / "artifacts" / "runs").is_dir(), depth)


def is_ray_temp_dir(folder: Path) -> bool:
    """A Ray temp dir (``ray start --temp-dir``): it holds ``session_latest`` or a ``session_<date>_...`` folder."""
    if (folder / "session_latest").exists():
        return True
    try:
        return any(RAY_SESSION.match(entry.name) and entry.is_dir() for entry in folder.iterdir())
    except OSError:
        return False


def ray_temp_dirs_inside(working_dir: str, depth: int = 2) -> list[str]:
    """Ray temp dirs up to ``depth`` levels inside ``working_dir``, found by their content, whatever their name.

    Why: a `ray start --temp-dir` inside the project folder was uploaded with the code, and its
    session logs grow until the upload is over Ray's 100 MiB limit; $RAY_TMPDIR is not set for it.
    """
    return folders_inside(working_dir, is_ray_temp_dir, depth)


def folders_inside(working_dir: str, wanted: Callable[[Path], bool], depth: int) -> list[str]:
    """The folders up to ``depth`` levels inside ``working_dir`` that are ``wanted`` (not searched further).

    Hidden folders, symlinks and those excluded by name are not searched.
    """
    found: list[str] = []
    level = [Path(working_dir).expanduser()]
    for _ in range(depth):
        children = []
        for folder in level:
            try:
                entries = [entry for entry in folder.iterdir() if entry.is_dir() and not entry.is_symlink()]
            except OSError:  # unreadable: Ray's upload will say so
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.name in WORKING_DIR_EXCLUDES:
                    continue
                if wanted(entry):
                    found.append(str(entry))
                else:
                    children.append(entry)
        level = children
    return found


def build_runtime_env(
    working_dir: str, env_vars: dict[str, str], pip: list[str] | None, skip: Iterable[str | None] = ()
) -> dict[str, Any]:
    """The job's runtime_env: the code to upload (minus local clutter), env vars, extra pip.

    ``skip`` names local folders (workspace, stores) to leave out when they lie inside the upload;
    $RAY_TMPDIR is always one of them.
    """
    skipped = inside_excludes(
        working_dir,
        [*skip, os.environ.get("RAY_TMPDIR"), *workspaces_inside(working_dir), *ray_temp_dirs_inside(working_dir)],
    )
    runtime_env: dict[str, Any] = {
        "working_dir": working_dir,
        "excludes": [*WORKING_DIR_EXCLUDES, *skipped],
        "env_vars": dict(env_vars),
    }
    if pip:
        runtime_env["pip"] = list(pip)
    return runtime_env


def largest_uploaded(root: Path, excludes: list[str], count: int = 3) -> str:
    """The ``count`` largest folders of ``root`` as Ray uploads it (``excludes`` left out), e.g. ``data (800 MiB)``.

    Why: "over Ray's 100 MiB limit" alone left the user to hunt for what was packed. Measured
    with Ray's own matcher for the excludes, only after an upload was refused. A link to a folder is
    followed, as Ray's packing follows it (a virtualenv linked into the project was packed whole while
    this list named only the small folders), each real folder once.
    """
    from ray._private.runtime_env.packaging import _get_excludes

    excluded = _get_excludes(root, excludes)
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        seen.add(os.path.realpath(here))
        dirs[:] = [name for name in dirs if not excluded(here / name) and os.path.realpath(here / name) not in seen]
        if here == root:
            continue
        top = here.relative_to(root).parts[0]
        for name in files:
            with contextlib.suppress(OSError):
                if not excluded(here / name):
                    sizes[top] = sizes.get(top, 0) + (here / name).lstat().st_size
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:count]
    if not largest:
        return "its files are large, not its folders"
    listed = ", ".join(f"{name}/ ({size / 2**20:.0f} MiB)" for name, size in largest)
    return f"its largest folders: {listed}"


UPLOAD_LOGGERS = (  # the loggers of Ray's packing and upload of a working_dir, by module
    "ray._private.runtime_env.packaging",
    "ray._private.runtime_env.working_dir",
    "ray.dashboard.modules.dashboard_sdk",
)
DEFAULT_EXCLUDE_ADVICE = "is now ignored by default when packaging the working directory"


class _UploadNoise(logging.Filter):
    """Drops Ray's INFO lines about packing and pushing the upload, and its advice on its default excludes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and DEFAULT_EXCLUDE_ADVICE not in record.getMessage()


def quiet_upload() -> None:
    """Keep Ray's 8-12 lines per submit off stderr as it packs and uploads the working_dir; its errors pass.

    Why: `Ignoring upload to cluster for these files: [.../.gitignore]` six times, `Creating a file package`,
    `Uploading package gcs://...` said nothing a user acts on, and `Directory '.venv' is now ignored by default
    ... set RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES=''` advised what would upload the virtualenv (Relay's own
    excludes leave it out, and an upload over Ray's limit is refused with its largest folders). Set once per
    process: these loggers log nothing else a `relay` command shows.
    """
    for name in UPLOAD_LOGGERS:
        upload_logger = logging.getLogger(name)
        if not any(isinstance(each, _UploadNoise) for each in upload_logger.filters):
            upload_logger.addFilter(_UploadNoise())
