"""Ctrl-C while following a job's log: exit 130, one line saying the job runs on, no traceback.

A small aiohttp server answers like Ray's Jobs server (version, job status, a log tail that
sends one line and then waits); the real `relay logs -f` runs in a child process that gets SIGINT.
"""

from __future__ import annotations

import asyncio
import os
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
    """A Jobs server whose job r1 is RUNNING and whose log tail never ends."""

    async def version(request):
        return aiohttp_web.json_response({"ray_version": "2.60.0"})

    async def status(request):
        body = {"type": "SUBMISSION", "submission_id": "r1", "status": "RUNNING", "entrypoint": "relay run x"}
        return aiohttp_web.json_response(body)

    async def tail(request):
        ws = aiohttp_web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello from the driver\n")
        await asyncio.sleep(3600)
        return ws

    app = aiohttp_web.Application()
    app.router.add_get("/api/version", version)
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


def test_ctrl_c_while_following_exits_130_and_says_the_job_runs_on(tailing_server: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_"))}
    env.update(HOME=str(tmp_path), RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "logs", "-f", "r1", "--address", tailing_server],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert child.stdout.readline() == "hello from the driver\n"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "aclose" not in err
    assert (
        "job r1 is still running on the cluster: follow it with `relay logs -f r1`, stop it with `relay stop r1`" in err
    )
