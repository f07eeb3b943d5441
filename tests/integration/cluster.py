"""Real local Ray clusters for integration tests, and how to end exactly the processes a test started.

`ray stop` would end every Ray instance on the machine, other people's too, so
tests stop their own process group and its descendants (Ray's workers call
setsid, so the group alone misses them; the process tree does not).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
REPOSITORY = Path(__file__).resolve().parents[2]
MAX_SOCKET_PATH = 107  # AF_UNIX limit; Ray puts sockets under <temp>/session_<date>_<pid>/sockets/
# the longest socket Ray 2.60 makes there is the dashboard's MetricsHead module's
SESSION_SUFFIX = len("/session_2026-01-01_00-00-00_000000_1234567/sockets/dash_MetricsHead")
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    """The first truthy value of ``predicate()``; fails the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before.

    Why: the kernel may give a just-released port to the next bind(0), and a node's ports are
    chosen before its `ray start` binds any of them; CI once saw the head's client server and
    its dashboard given the same port (`ray start` refused: "used by other components").
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def ray_temp_dir(tmp_path: Path) -> Path:
    """Under tmp_path when Ray's socket paths fit, else a new short folder in /tmp, removed when the test
    process exits (pytest leaves no folder of its own there)."""
    candidate = tmp_path / "ray"
    if len(str(candidate)) + SESSION_SUFFIX < MAX_SOCKET_PATH:
        return candidate
    short = Path(tempfile.mkdtemp(prefix="ray_relay_test_", dir="/tmp"))
    atexit.register(shutil.rmtree, short, ignore_errors=True)  # the test's nodes are stopped by then
    return short


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user with the venv activated and a fresh HOME."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(
        HOME=str(home),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def processes_of_group(pgid: int) -> set[int]:
    """Every process in the `ray start` process group, plus all their descendants.

    Ray's workers call setsid, so the group alone misses them; the tree does not.
    """
    members = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) == pgid:
                members.add(int(proc.name))
        except (ProcessLookupError, PermissionError):
            continue
    return members | descendants(members)


def descendants(roots: set[int]) -> set[int]:
    """Every process below ``roots`` in the process tree (children, theirs, ...), the roots left out."""
    tree, found, todo = children_of(), set(), list(roots)
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # the process may exit between the kill(0) above and this read
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_processes(pids: set[int], grace_s: float = 3.0) -> None:
    """SIGTERM, wait, then SIGKILL what is left (gcs_server ignores SIGTERM: seen)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.2)


@contextlib.contextmanager
def durable_folder(name: str) -> Iterator[Path]:
    """A new folder path under the repository's test-artifacts/ (``name``-XXXXXXXX), outside the temporary folders a
    cluster command refuses as a store; not created here (a refused command must not create it either), removed after."""
    path = REPOSITORY / "test-artifacts" / f"{name}-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
