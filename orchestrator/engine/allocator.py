"""glibc malloc settings for the processes that run stage bodies (training steps, labeling shards).

A CPU stage allocates and frees the same few large activation buffers (several MB each at batch
512) on every batch. glibc's defaults serve a request above 128 KiB with a fresh ``mmap`` and trim
freed heap above 128 KiB back to the system, so each batch page-faults its buffers in again; the
thresholds only grow once the process happens to free a large mapped block. A process that has not
(a fresh Ray actor) labeled digits 25% slower per core than one that had, which is why two labeling
actors reached only 1.4x of one worker measured in a warmed-up driver (benchmarks/labeling.py).

Fixing the thresholds up front (32 MiB: glibc's own ceiling for its adaptive threshold; keep up to
256 MiB of freed heap) makes every worker run at the warmed-up speed. Results do not change (the
same arithmetic on the same values). A process started with ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` in its environment keeps the user's choice (the memory benchmarks set
them so that RSS tracks live bytes); other C libraries and platforms are left as they are.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 256 * 2**20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_applied: bool | None = None


def tune_malloc() -> bool:
    """Set the stage process's malloc thresholds once; True if glibc took them (False: left as it was)."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt is a no-op)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
