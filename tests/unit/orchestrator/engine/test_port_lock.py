"""port_lock: a second local Ray start waits for the first to have bound its dashboard port, within limits."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

from orchestrator.engine import port_lock

HOLDER = """
import sys
from pathlib import Path
from orchestrator.engine.port_lock import dashboard_port_lock
with dashboard_port_lock(Path(sys.argv[1])) as held:
    print("held" if held else "not held", flush=True)
    sys.stdin.readline()
"""


def _holder(path: Path) -> subprocess.Popen:
    """Another process (another `relay run` mid-start) holding the lock until a line arrives on its stdin."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def _release(holder: subprocess.Popen) -> None:
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=30) == 0


def test_a_second_start_waits_until_the_first_lets_go(tmp_path):
    path = tmp_path / "port.lock"
    holder = _holder(path)
    got: list[bool] = []

    def take() -> None:
        with port_lock.dashboard_port_lock(path) as held:
            got.append(held)

    second = threading.Thread(target=take)
    try:
        second.start()
        second.join(timeout=1.5)
        assert second.is_alive() and not got  # still waiting: the other process holds the lock
    finally:
        _release(holder)
    second.join(timeout=30)
    assert got == [True]


def test_a_lock_held_too_long_is_given_up_and_the_start_goes_on(tmp_path, caplog):
    path = tmp_path / "port.lock"
    holder = _holder(path)
    try:
        with caplog.at_level(logging.WARNING), port_lock.dashboard_port_lock(path, wait_s=0.3) as held:
            assert held is False
    finally:
        _release(holder)
    assert "choosing the dashboard port without it" in caplog.text


def test_a_lock_file_that_cannot_be_opened_leaves_the_block_unlocked(tmp_path):
    with port_lock.dashboard_port_lock(tmp_path / "no such folder" / "port.lock") as held:
        assert held is False


def test_the_lock_is_free_again_once_the_block_ends(tmp_path):
    path = tmp_path / "port.lock"
    with port_lock.dashboard_port_lock(path) as first:
        assert first
    with port_lock.dashboard_port_lock(path, wait_s=0.0) as again:
        assert again
