"""How a `relay run` on Ray ends when stopped from outside: its exit code and the lines it leaves.

Real processes and signals, a real local Ray instance, a real sqlite MLflow store.

- SIGTERM to the driver (timeout, systemd, a batch scheduler; `relay stop` in a job) while a stage
  runs: exit 143 (128 + SIGTERM) and Relay's one line; it ended in SIGABRT (134, the shell's
  "Aborted") after Ray's C++ handler printed "*** SIGTERM received ... PC: @ ..." three times.
- SIGTERM to a driver whose join hangs in Ray's C++ client: 143 too (it was 130, as for Ctrl-C;
  tests/integration/test_join_probe.py).
- Ctrl-C while Ray's dashboard starts: Relay's line alone, without Ray's "Failed to start the
  dashboard" and the last 20 lines of its log (the Ctrl-C stopped it); a local run is never
  told about `relay submit --resume`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.integration.cluster import wait_for
from tests.integration.relay_cli import relay_env
from tests.integration.test_interrupts import SMOKE, ledger, start_run, stopped, training

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_during_a_stage_exits_143_with_relays_line_only(tmp_path):
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    driver = start_run(workspace, "termed", log, steps=2000, on_ray=True)  # never done before the signal
    wait_for(lambda: training(workspace, "termed") or driver.poll() is not None, 600, "g00/train to start")
    code = stopped(driver, signal.SIGTERM, group=False)
    output = log.read_text()
    assert code == 143, output[-3000:]
    assert "SIGTERM received" not in output and "Traceback" not in output, output[-3000:]
    assert output.count("interrupted; resume with: relay resume termed") == 1, output[-3000:]
    assert ledger(workspace, "termed")["status"] == "INTERRUPTED"


def dashboard_starting(driver: subprocess.Popen) -> bool:
    """Ray's dashboard process exists under the driver, and the driver has not yet said Ray started."""
    try:
        children = psutil.Process(driver.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return True  # ended: nothing left to wait for
    for child in children:
        try:
            if any("dashboard.py" in part for part in child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def test_ctrl_c_while_the_dashboard_starts_prints_relays_line_only(tmp_path):
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    command = [sys.executable, "-m", "orchestrator.cli", "run", str(SMOKE), "train.steps=40", "--run-id", "early"]
    with log.open("w") as out:
        driver = subprocess.Popen(
            command, cwd=ROOT, env=relay_env(workspace), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_for(lambda: dashboard_starting(driver) or driver.poll() is not None, 300, "Ray's dashboard to start")
    assert stopped(driver, signal.SIGINT) == 130
    output = log.read_text()
    assert "Failed to start the dashboard" not in output and "ERROR" not in output, output[-3000:]
    assert "interrupted" in output and "relay submit" not in output, output[-3000:]
