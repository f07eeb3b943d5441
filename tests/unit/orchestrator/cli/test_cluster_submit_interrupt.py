"""Ctrl-C while following a job's log: exit 130, one line saying the job runs on, no traceback.

A small aiohttp server answers like Ray's Jobs server (version, job status, a log tail that
sends one line and then waits); the real `relay logs -f` runs in a child process that gets SIGINT,
in its main thread or, as the kernel may choose for a terminal's Ctrl-C, in another of its threads.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

aiohttp_web = pytest.importorskip("aiohttp.web")

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def tailing_server() -> Iterator[str]:
    """A Jobs server whose only job, r1, is RUNNING and whose log tail never ends."""

    async def version(request):
        return aiohttp_web.json_response({"ray_version": "2.60.0"})

    job = {"type": "SUBMISSION", "submission_id": "r1", "status": "RUNNING", "entrypoint": "relay run x"}

    async def status(request):
        return aiohttp_web.json_response(job)

    async def listing(request):  # `relay logs RUN_ID` looks for the run's newest job first
        return aiohttp_web.json_response([job])

    async def tail(request):
        ws = aiohttp_web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello from the driver\n")
        await asyncio.sleep(3600)
        return ws

    app = aiohttp_web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/jobs/", listing)
    app.router.add_get("/api/jobs/r1", status)
    app.router.add_get("/api/jobs/r1/logs/tail", tail)
    loop = asyncio.new_event_loop()
    runner = aiohttp_web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = aiohttp_web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def follow_in_child(address: str, tmp_path: Path) -> subprocess.Popen:
    """`relay logs -f r1` in a child process, once it has printed the tail's first line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_"))}
    env.update(HOME=str(tmp_path), RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "logs", "-f", "r1", "--address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        # as from a terminal: a suite started in the background (`make test &`) ignores SIGINT, and Python
        # keeps an inherited SIG_IGN instead of installing its KeyboardInterrupt handler
        preexec_fn=default_sigint,
    )
    assert child.stdout.readline() == "hello from the driver\n"
    return child


def assert_stopped_following(child: subprocess.Popen) -> None:
    try:
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "aclose" not in err
    assert (
        "job r1 is still running on the cluster: follow it with `relay logs -f r1`, stop it with `relay stop r1`" in err
    )


def test_ctrl_c_while_following_exits_130_and_says_the_job_runs_on(tailing_server: str, tmp_path: Path) -> None:
    child = follow_in_child(tailing_server, tmp_path)
    child.send_signal(signal.SIGINT)
    assert_stopped_following(child)


TGKILL = {"x86_64": 234, "aarch64": 131}  # the tgkill syscall's number (os has no tgkill)


def threads_taking_sigint(pid: int) -> list[int]:
    """The threads of ``pid`` other than its main one that do not block SIGINT (/proc's SigBlk mask)."""
    tids = []
    for tid in sorted(int(name) for name in os.listdir(f"/proc/{pid}/task")):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
        blocked = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
        if tid != pid and not blocked & (1 << (signal.SIGINT - 1)):
            tids.append(tid)
    return tids


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in TGKILL, reason="sends a signal to one thread: Linux tgkill"
)
def test_ctrl_c_delivered_to_another_thread_still_stops_following(tailing_server: str, tmp_path: Path) -> None:
    """The kernel may hand a process's SIGINT to any thread that does not block it, here aiohttp's resolver
    thread. Python then runs the handler in the main thread only once it runs bytecode again, and a
    main thread asleep in epoll_wait on a quiet tail never did: `relay logs -f` ignored the Ctrl-C."""
    child = follow_in_child(tailing_server, tmp_path)
    others = threads_taking_sigint(child.pid)
    assert others, (
        f"expected a thread besides the main one (aiohttp's resolver) in {os.listdir(f'/proc/{child.pid}/task')}"
    )
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(TGKILL[platform.machine()], child.pid, others[0], signal.SIGINT) == 0, ctypes.get_errno()
    assert_stopped_following(child)
