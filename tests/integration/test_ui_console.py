"""`relay ui` prints the URL and the server's own lines, not Starlette's deprecation warning: a real `relay ui`
process, its real `mlflow server`, a real sqlite store.

Before the fix: each of the server's two processes printed `StarletteDeprecationWarning: starlette.middleware.wsgi is
deprecated ...` and the line that imports it under the URL, a library's warning the user can do nothing about;
and MLflow's "Registry store URI not provided. Using backend store URI." (its default, said on every start).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.cluster import free_port, processes_of_group, stop_processes, wait_for
from tests.integration.test_ui_server import tracked_workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def answers(port: int) -> bool:
    """Whether the MLflow UI answers: the server has imported what it serves with, warnings and all."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_relay_ui_prints_no_starlette_deprecation_warning(tmp_path: Path) -> None:
    tracked_workspace(tmp_path)
    port = free_port()
    command = [sys.executable, "-m", "orchestrator.cli", "ui", "--workspace", str(tmp_path), "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONWARNINGS", "MLFLOW_TRACKING_URI")}
    log = (tmp_path / "ui.log").open("w+")
    relay = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started: set[int] = set()
    try:
        wait_for(lambda: answers(port), 300, f"the MLflow UI to answer on port {port}", poll_s=0.5)
        started = processes_of_group(relay.pid) - {relay.pid}
        os.kill(relay.pid, signal.SIGTERM)
        assert relay.wait(timeout=120) == 0
    finally:
        stop_processes((processes_of_group(relay.pid) | started) - {os.getpid()})
        log.seek(0)
        output = log.read()
        log.close()
    assert f"MLflow UI: http://127.0.0.1:{port}/#/experiments/" in output, output[-3000:]
    assert "StarletteDeprecationWarning" not in output and "starlette.middleware.wsgi" not in output, output[-3000:]
    assert "Registry store URI not provided" not in output, output[-3000:]  # MLflow's note on its own default
