"""`relay ui --port N` with MLFLOW_TRACKING_URI naming a tracking server says --port is not used.

The server serves its own UI, so `relay ui` starts nothing and prints the server's URL; the port asked
for was dropped without a word. A real `mlflow server` on a sqlite store, the real CLI in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.integration.test_tracking_server import ROOT, Server, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def server(tmp_path):
    started = Server(tmp_path)
    yield started
    started.kill()


def relay_ui(uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "orchestrator.cli", "ui", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_port_given_with_a_tracking_server_is_said_to_be_unused(server) -> None:
    tracker = MlflowTracker(server.uri, "relay")
    tracker.start_pipeline("run-port", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    port = free_port()
    done = relay_ui(server.uri, "--port", str(port))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"--port {port} is not used: the tracking server at {server.uri}" in done.stdout, done.stdout
    assert "serves its own UI" in done.stdout
    assert f"{server.uri}/#/experiments/" in done.stdout
    quiet = relay_ui(server.uri)  # no --port: nothing to say about it
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "is not used" not in quiet.stdout, quiet.stdout
