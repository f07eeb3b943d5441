"""Whether a path is in a temporary or per-session place: one check for every command that asks.

A cluster run's results must outlive the cluster. They do not in Ray's per-session folders
(``session_<date>_...``, ``session_latest``, a job's ``runtime_resources``), deleted with the
session, nor in the machine's temporary folders (/tmp, /var/tmp, /dev/shm, $TMPDIR,
$RAY_TMPDIR), which are each node's own and cleaned by the system. A relative path is resolved
inside a Ray job's working folder, itself under the session folder. A path is checked as written,
then as it resolves through symlinks: ``ray start --temp-dir DIR`` makes ``DIR/session_latest`` a
link to the session's folder, and a link elsewhere into a session or temporary folder loses the
results as surely as the folder itself.

Why a module of its own: `relay submit` refuses such stores (``run_locations``), and the advice
``preflight`` gives for an MLflow file store must not name one; ``run_locations`` imports
``preflight``, so the check lives below both.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import PurePosixPath

from orchestrator.jobs.upload import RAY_SESSION

TEMP_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")
CLEARED_ON_REBOOT = ("/tmp", "/dev/shm")  # most systems mount them as tmpfs or empty them at boot; /var/tmp is kept
TEMP_DIR_ENVS = ("RAY_TMPDIR", "TMPDIR")  # Ray's temp dir and the system's, where set
PER_SESSION = "inside Ray's per-session folder (deleted with the session)"
RELATIVE = "a relative path, which a Ray job resolves inside its working folder (deleted with Ray's session)"


def temp_roots() -> list[str]:
    """This machine's temporary folders: the usual ones, Python's, and those $RAY_TMPDIR and $TMPDIR name."""
    roots = {*TEMP_ROOTS, tempfile.gettempdir()}
    roots.update(os.environ[name] for name in TEMP_DIR_ENVS if os.environ.get(name))
    return sorted(roots)


def impermanence(path: str, roots: Iterable[str] | None = None) -> str | None:
    """Why results at ``path`` would not outlive a Ray cluster's session, or None when they would.

    ``roots``: the temporary folders to refuse (``temp_roots()`` by default). ``~/x`` is a home
    folder, not a relative path (a job expands it on the cluster). An absolute path is checked as
    written, then as it resolves through symlinks, as far as it exists here.
    """
    roots = temp_roots() if roots is None else list(roots)
    pure = PurePosixPath(path)
    if pure.parts and pure.parts[0].startswith("~"):
        home = PurePosixPath("/home", *pure.parts[1:])  # where a home folder lives; never a temporary one
        return _temporary_place(home, roots)
    if not pure.is_absolute():
        return RELATIVE
    why = _temporary_place(pure, roots)
    real = _real_path(pure)
    if why is None and real != pure:
        why = _temporary_place(real, roots)
        return None if why is None else f"{why}, through a symlink (it resolves to {real})"
    return why


def _real_path(path: PurePosixPath) -> PurePosixPath:
    """``path`` with its symlinks (and ``..``) resolved as far as it exists on this machine; itself when unreadable."""
    try:
        return PurePosixPath(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _temporary_place(path: PurePosixPath, roots: list[str]) -> str | None:
    """Why the absolute ``path``, as written, lies in a Ray session folder or one of ``roots``, or None."""
    if "runtime_resources" in path.parts or any(RAY_SESSION.match(part) for part in path.parts):
        return PER_SESSION
    for root in roots:
        places = {PurePosixPath(root), _real_path(PurePosixPath(root))}  # /tmp may be a link (/private/tmp)
        if any(path == place or place in path.parents for place in places):
            return f"under {root}, {_temporary_folder(root)}"
    return None


def _temporary_folder(root: str) -> str:
    """What a temporary folder ``root`` is, truthfully: /var/tmp and $TMPDIR survive a reboot on most systems."""
    if root in CLEARED_ON_REBOOT:
        return "a temporary folder (node-local, cleared on reboot)"
    return "a temporary folder that the system may clean (node-local, not shared between nodes)"
