"""tune_malloc: a stage process serves large buffers from its heap instead of a fresh mmap per batch.

Each case runs in a fresh interpreter, since malloc settings are process-wide and only a process
that has never freed a large block shows glibc's defaults. Whether a block was mapped is read
from glibc's own accounting (``mallinfo2().hblkhd``, bytes in mmapped blocks).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine import allocator

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc >= 2.33 (mallinfo2) only: elsewhere tune_malloc leaves the allocator alone",
)

ROOT = Path(__file__).resolve().parents[4]
BLOCK = 20 * 2**20  # a conv activation at batch 512: above glibc's 128 KiB default, below the 32 MiB set


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def served_from_heap(nbytes: int = BLOCK) -> bool:
    """Whether this process's malloc serves an ``nbytes`` block from the heap (True) or maps it (False)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(nbytes)
    try:
        return libc.mallinfo2().hblkhd - before < nbytes
    finally:
        libc.free(block)


def probe(tune: bool, env: dict[str, str] | None = None) -> tuple[bool, bool]:
    """(tune_malloc's answer, served from the heap) in a fresh interpreter."""
    code = (
        "from orchestrator.engine.allocator import tune_malloc\n"
        "from tests.unit.orchestrator.engine.test_allocator import served_from_heap\n"
        f"applied = tune_malloc() if {tune} else False\n"
        "print(applied, served_from_heap())\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in allocator.USER_SETTINGS}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), clean.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **(env or {})}, cwd=ROOT, capture_output=True, text=True, check=True
    )
    applied, heap = out.stdout.split()
    return applied == "True", heap == "True"


def test_a_fresh_process_maps_a_large_block_until_tuned() -> None:
    assert probe(tune=False) == (False, False)  # glibc's default: the block is a fresh mapping
    assert probe(tune=True) == (True, True)


def test_the_users_malloc_settings_win() -> None:
    assert probe(tune=True, env={"MALLOC_MMAP_THRESHOLD_": "65536"}) == (False, False)
    assert probe(tune=True, env={"MALLOC_TRIM_THRESHOLD_": "131072"})[0] is False


def test_tuning_is_applied_once_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_apply", lambda: calls.append(1) or True)
    assert allocator.tune_malloc() and allocator.tune_malloc()
    assert calls == [1]
