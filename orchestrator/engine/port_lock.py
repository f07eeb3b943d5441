"""A machine-wide lock held while a local Ray picks its dashboard port and binds it.

A free port can only be seen, not kept: two `relay run` started in the same second both saw 8265
free, and the second one's dashboard failed to bind it about a minute later (Ray 2.60 waits for its
dashboard, then gives up; ``ray_session._start_ray`` then retries on another port). Held from the
check until Ray's dashboard is up, this lock makes the second start see the port taken and pick
another at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = "relay-dashboard-port.lock"
# Longer than a local Ray start takes on a busy 2-core machine; a start that hangs elsewhere must not
# hold every other run on the machine back for good.
WAIT_S = 120.0
POLL_S = 0.1


def lock_path() -> Path:
    """Where the lock lives: the machine's temporary folder (it holds nothing a run needs afterwards)."""
    return Path(tempfile.gettempdir()) / LOCK_NAME


@contextlib.contextmanager
def dashboard_port_lock(path: Path | None = None, wait_s: float = WAIT_S) -> Iterator[bool]:
    """Hold the lock for the block and yield True; after ``wait_s`` without it, yield False and go on.

    Opened read-only (``flock`` needs no write access), so a lock file another user created still
    serves. Where it cannot be opened at all, the block runs unlocked: the retry on another port
    still starts Ray, only later.
    """
    path = path or lock_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        logger.debug("no dashboard port lock at %s (%s); choosing the port unlocked", path, exc)
        yield False
        return
    try:
        yield _acquire(fd, path, wait_s)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _acquire(fd: int, path: Path, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                logger.warning(
                    "another local Ray start has held %s for %.0f s; choosing the dashboard port without it",
                    path,
                    wait_s,
                )
                return False
            time.sleep(POLL_S)
