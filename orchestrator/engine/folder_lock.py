"""An exclusive lock on a folder, held by the one process at work in it: a second one is refused, not queued.

Apart because three take one: `relay resume` on its run's record folder (``resume_guard``),
`relay tune` on its sweep's folder (``sweep_folder``), a run on the folder of a stage it computes
(``stage_claims``). The lock is a ``flock`` on the folder itself, so nothing is written for it, and
the kernel lets it go when its holder exits or dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class FolderHeld(Exception):
    """Another process holds the folder locked."""


@contextlib.contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
    """Hold ``folder`` locked for the block, let go when the block ends, returned or raised.

    Raises ``FolderHeld`` at once when another process holds it, and ``OSError`` when the folder
    cannot be opened.
    """
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderHeld(str(folder)) from None
        yield
    finally:
        os.close(descriptor)  # closing the descriptor lets the lock go
