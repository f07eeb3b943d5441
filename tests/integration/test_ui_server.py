"""`relay ui` stops the `mlflow server` it started: real processes, real signals, a real sqlite store.

SIGTERM to `relay` alone (`kill <relay pid>`) used to end Relay and leave `mlflow server` and its
uvicorn serving the port, re-parented to PID 1; Ctrl-C (SIGINT to the terminal's process group)
while the server was still starting printed its 40-line KeyboardInterrupt traceback. Now both end
every process Relay started, quietly, with exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.integration.cluster import alive, free_port, processes_of_group, stop_processes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def tracked_workspace(folder: Path) -> Path:
    """A workspace whose tracking store holds one finished pipeline run, so `relay ui` has something to show."""
    tracker = MlflowTracker(f"sqlite:///{folder / 'mlflow.db'}", "relay")
    tracker.start_pipeline("run-ui", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    return folder


def importing(relay_pid: int) -> bool:
    """Whether the server Relay started is busy starting up: a child that has spent 0.5 s of CPU.

    Python installs its SIGINT handler within its first few milliseconds, then importing MLflow
    takes seconds; a Ctrl-C in between is the one the server used to answer with a traceback.
    """
    children = psutil.Process(relay_pid).children()
    return any(sum(child.cpu_times()[:2]) >= 0.5 for child in children)


@pytest.mark.parametrize(
    ("moment", "signal_to", "sig"),
    [("serving", "relay", signal.SIGTERM), ("serving", "group", signal.SIGINT), ("starting", "group", signal.SIGINT)],
    ids=["kill-relay-pid", "ctrl-c", "ctrl-c-while-starting"],
)
def test_stopping_relay_ui_stops_the_mlflow_server_it_started(tmp_path, moment, signal_to, sig):
    workspace, port = tracked_workspace(tmp_path), free_port()
    command = [sys.executable, "-m", "orchestrator.cli", "ui", "--workspace", str(workspace), "--port", str(port)]
    log = (tmp_path / "ui.log").open("w+")
    relay = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started: set[int] = set()
    try:
        if moment == "serving":
            wait_for(lambda: healthy(port), 300, f"mlflow server to answer on port {port}", poll_s=0.5)
        else:
            wait_for(lambda: importing(relay.pid), 300, "mlflow server to be starting", poll_s=0.05)
        started = processes_of_group(relay.pid) - {relay.pid}
        assert started, "relay ui started no server process"
        if signal_to == "relay":
            os.kill(relay.pid, sig)
        else:  # what Ctrl-C in a terminal does: the signal goes to the whole foreground process group
            os.killpg(relay.pid, sig)
        assert relay.wait(timeout=120) == 0
        wait_for(lambda: not any(alive(pid) for pid in started), 60, "the server's processes to exit")
        assert not healthy(port)
    finally:
        stop_processes((processes_of_group(relay.pid) | started) - {os.getpid()})
        log.seek(0)
        output = log.read()
        log.close()
    assert "Traceback" not in output, output[-3000:]
    assert "INFO:" not in output, output[-3000:]  # uvicorn's start-up and request lines


def test_the_ui_address_is_printed_once_the_server_answers(tmp_path):
    """`relay ui` printed the address before it started `mlflow server`, which then took 5 s or more to listen: a
    click on the fresh link was refused. The address now comes once the server answers."""
    workspace, port = tracked_workspace(tmp_path), free_port()
    command = [sys.executable, "-m", "orchestrator.cli", "ui", "--workspace", str(workspace), "--port", str(port)]
    log_path = tmp_path / "ui.log"
    with log_path.open("w") as log:
        relay = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"MLflow UI: http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: address in log_path.read_text() or relay.poll() is not None, 300, "relay ui's address")
        answered = healthy(port)  # at once: no wait, no retry
        started = processes_of_group(relay.pid) - {relay.pid}
        os.kill(relay.pid, signal.SIGTERM)
        assert relay.wait(timeout=120) == 0
    finally:
        stop_processes(processes_of_group(relay.pid) - {os.getpid()})
    output = log_path.read_text()
    assert address in output, output[-3000:]
    assert answered, f"the address was printed before the server answered: {output[-3000:]}"
    assert output.index("MLflow UI: starting") < output.index(address)
    assert started, "relay ui started no server process"
