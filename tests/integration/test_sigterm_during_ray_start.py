"""SIGTERM while `relay run` starts its local Ray instance: exit 143 and Relay's resume line.

Real process, real signal, a real local Ray instance. ``ray.init`` sets its own SIGTERM handlers
as it starts: a SIGTERM then ended the run with 15 (Ray's ``sys.exit(signum)``), or with 1 after
Ray's node drained for 30 s, instead of 143. The signal is made to land inside ``ray.init``
without timing: the driver is stopped (SIGSTOP) once Ray's GCS runs under it, and while it is
stopped its log is read to check that ray.init has not yet said it started Ray; the SIGTERM is
then sent and the driver continued, so the handler runs at that point of the start.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.integration.cluster import wait_for
from tests.integration.test_interrupts import start_run, stopped

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

STARTED = "Started a local Ray instance"  # ray.init's line once its processes run, before it connects the driver


def ray_processes(driver: subprocess.Popen) -> list[psutil.Process]:
    """The processes the driver started (Ray's), none once it ended."""
    try:
        return psutil.Process(driver.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def gcs_running(driver: subprocess.Popen) -> bool:
    """Ray's GCS server runs under the driver (ray.init has begun starting Ray), or the driver ended."""
    for child in ray_processes(driver):
        try:
            if any("gcs_server" in part for part in child.cmdline()):
                return True
        except psutil.Error:
            continue
    return driver.poll() is not None


def test_sigterm_while_ray_starts_exits_143_with_relays_line(tmp_path: Path) -> None:
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    driver = start_run(workspace, "starting", log, steps=30, on_ray=True)
    wait_for(lambda: gcs_running(driver), 300, "ray.init to start Ray's GCS", poll_s=0.02)
    assert driver.poll() is None, log.read_text()[-3000:]
    os.kill(driver.pid, signal.SIGSTOP)
    started = ray_processes(driver)
    assert STARTED not in log.read_text(), "ray.init had already started Ray: the signal would not land in it"
    os.kill(driver.pid, signal.SIGTERM)  # pending until the driver runs again, inside ray.init
    code = stopped(driver, signal.SIGCONT, group=False)
    output = log.read_text()
    assert code == 143, output[-3000:]
    assert "Traceback" not in output and "SIGTERM received" not in output, output[-3000:]
    assert output.count("interrupted before the stages started; resume with: relay resume starting") == 1, output
    _, left = psutil.wait_procs(started, timeout=60)  # Ray's processes stopped with the run, not left running
    assert not left, [process.pid for process in left]
