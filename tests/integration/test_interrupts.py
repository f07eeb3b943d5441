"""A `relay run` stopped from outside, for real: Ctrl-C, SIGKILL then `relay resume`, a reader that goes away.

Real processes and signals, a real sqlite MLflow store, the in-process executor (the stage runs in
the driver, so a signal to the driver reaches the training loop itself; no Ray to clean up).

- Ctrl-C during training: one line saying how to resume, exit 130, no traceback; the ledger and
  `relay runs` say INTERRUPTED, not FAILED; MLflow closes the parent and the open runs KILLED.
- SIGKILL during training, then `relay resume`: the dead attempt's stage run is KILLED, not
  RUNNING forever beside the resumed one.
- `relay runs | head -1`: the reader closes the pipe; relay exits quietly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.integration.cluster import wait_for
from tests.integration.relay_cli import own_name, pipeline_runs, relay, relay_env, runs_by_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
IN_PROCESS = "run.executor=local"


def start_run(workspace: Path, run_id: str, log_file: Path, steps: int, on_ray: bool = False) -> subprocess.Popen:
    """`relay run` of smoke.yaml whose g00/train runs ``steps`` steps in the driver itself (``on_ray``: on Ray)."""
    overrides = [f"train.steps={steps}", *([] if on_ray else [IN_PROCESS])]
    command = [sys.executable, "-m", "orchestrator.cli", "run", str(SMOKE), *overrides, "--run-id", run_id]
    log = log_file.open("w")
    return subprocess.Popen(
        command, cwd=ROOT, env=relay_env(workspace), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def ledger(workspace: Path, run_id: str) -> dict:
    path = workspace / "artifacts" / "runs" / run_id / "ledger.json"
    return json.loads(path.read_text()) if path.exists() else {}


def training(workspace: Path, run_id: str) -> bool:
    """g00/train has started in the driver and its MLflow run is open: the moment to stop it."""
    stages = ledger(workspace, run_id).get("stages", {})
    return stages.get("g00/train", {}).get("state") == "running" and stage_run_open(workspace, f"g00/train of {run_id}")


def stage_run_open(workspace: Path, name: str) -> bool:
    """Read the store's table directly, read-only: an MlflowClient would race the driver creating the tables."""
    db = workspace / "mlflow.db"
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
            rows = connection.execute("SELECT status FROM runs WHERE name = ?", (name,)).fetchall()
    except sqlite3.OperationalError:  # the tables are not there yet, or the driver holds a write lock
        return False
    return ("RUNNING",) in rows


def names(workspace: Path, run_id: str) -> dict:
    return runs_by_name(workspace, run_id)


def stopped(driver: subprocess.Popen, sig: int, group: bool = True, log: Path | None = None) -> int:
    """Send ``sig`` as a terminal would (Ctrl-C: the whole foreground group), or to the driver alone (``group``
    False: `kill <pid>`), and wait for the driver. One that does not end fails with its threads' stacks and the tail
    of ``log``, its output."""
    try:
        if group:
            os.killpg(driver.pid, sig)
        else:
            driver.send_signal(sig)
        try:
            return driver.wait(timeout=300)
        except subprocess.TimeoutExpired as exc:
            said = log.read_text()[-3000:] if log is not None else ""
            raise AssertionError(f"the driver did not end; its threads:\n{thread_stacks(driver.pid)}\n{said}") from exc
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


def thread_stacks(pid: int) -> str:
    """Every thread's Python stack in process ``pid`` (py-spy, which Ray's default extra installs), for a hang's report."""
    spy = Path(sys.executable).with_name("py-spy")
    try:
        dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(py-spy could not read them: {exc})"
    return dump.stdout + dump.stderr


def test_ctrl_c_interrupts_the_run_says_how_to_resume_and_closes_mlflow_killed(tmp_path):
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    driver = start_run(workspace, "ctrl-c", log, steps=2000)  # never done before the signal
    wait_for(lambda: training(workspace, "ctrl-c") or driver.poll() is not None, 600, "g00/train to start")
    assert stopped(driver, signal.SIGINT) == 130
    output = log.read_text()
    assert "Traceback" not in output and "failed" not in output, output[-3000:]
    assert "interrupted; resume with: relay resume ctrl-c" in output
    assert ledger(workspace, "ctrl-c")["status"] == "INTERRUPTED"
    listed = relay("runs", workspace=workspace)
    assert [line.split()[2] for line in listed.stdout.splitlines() if line.startswith("ctrl-c ")] == ["INTERRUPTED"]
    statuses = {name: run.info.status for name, run in names(workspace, "ctrl-c").items()}
    assert statuses["ctrl-c"] == "KILLED" and statuses["g00/train"] == "KILLED", statuses
    assert "RUNNING" not in statuses.values(), statuses


def test_sigterm_to_a_driver_on_ray_leaves_the_run_interrupted_not_failed(tmp_path):
    """What `relay stop` (`ray job stop`) sends a job's driver; Ray's driver turns SIGTERM into SystemExit."""
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    driver = start_run(workspace, "stopped", log, steps=2000, on_ray=True)  # never done before the signal
    wait_for(lambda: training(workspace, "stopped") or driver.poll() is not None, 600, "g00/train to start")
    try:
        driver.send_signal(signal.SIGTERM)
        driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    output = log.read_text()
    assert "Fix the cause" not in output and "interrupted; resume with: relay resume stopped" in output, output[-3000:]
    assert ledger(workspace, "stopped")["status"] == "INTERRUPTED"
    statuses = {name: run.info.status for name, run in names(workspace, "stopped").items()}
    assert statuses["stopped"] == "KILLED" and "RUNNING" not in statuses.values(), statuses


def test_resume_after_sigkill_leaves_no_stage_run_running(tmp_path):
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    driver = start_run(workspace, "killed", log, steps=400)  # done again by the resume
    wait_for(lambda: training(workspace, "killed") or driver.poll() is not None, 600, "g00/train to start")
    assert stopped(driver, signal.SIGKILL) == -signal.SIGKILL
    resumed = relay("resume", "killed", "--stop-after", "g00/train", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trains = sorted(run.info.status for run in pipeline_runs(workspace, "killed") if own_name(run) == "g00/train")
    assert trains == ["FINISHED", "KILLED"]


def test_a_reader_that_closes_the_pipe_ends_relay_quietly(tmp_path):
    """`relay runs | head -1` with the reader gone before relay writes: the write fails every time."""
    (tmp_path / "ws").mkdir()  # a workspace named on purpose must exist (a missing one is exit 2)
    reader, writer = os.pipe()
    os.close(reader)  # like head after its first line: every write to the pipe now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "runs"],
            cwd=ROOT,
            env=relay_env(tmp_path / "ws"),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141


def test_ctrl_c_while_ray_starts_stops_the_run(tmp_path):
    """A terminal's Ctrl-C reaches Ray's new processes too; ray.init restarted them and returned, and the run
    went on to the end with exit 0. The run's records exist, its ledger not yet: Ray is starting."""
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    driver = start_run(workspace, "early", log, steps=2000, on_ray=True)
    record = workspace / "artifacts" / "runs" / "early" / "command.json"
    wait_for(lambda: record.exists() or driver.poll() is not None, 300, "the run's records")
    assert stopped(driver, signal.SIGINT) == 130
    output = log.read_text()
    assert "Traceback" not in output and "interrupted" in output, output[-3000:]
    listed = relay("runs", workspace=workspace)
    assert [line.split()[2] for line in listed.stdout.splitlines() if line.startswith("early ")] == ["INTERRUPTED"]
