"""Ctrl-C while a workspace's first `relay run` waits for MLflow to create its store: one line, and the next run works.

Before: the run's stages ended while MLflow still built the new sqlite store (seconds of schema migrations on the
tracker's thread); a Ctrl-C then came out of the tracker's join and `relay run` exited 130 with no line at all,
the run FINISHED with no MLflow run and no word or record of it. Now one line says what was interrupted, how the
run ended and the `relay resume` that fills its MLflow record in; the record says it is incomplete.

Real processes and SIGINT to the run's process group (a terminal's Ctrl-C), a real sqlite MLflow store. The window
is made deterministic by holding the store's creation lock (``tracking.common.store_lock``: an flock on
``mlflow.db.lock``), as a second `relay run` creating the same store would: the run's stages end while its MLflow
start waits for the lock. ``blocked``: the Ctrl-C comes while the lock is held; ``migrating``: the lock is let go
and the Ctrl-C comes once the schema is being built in its temporary file (it takes seconds, and everything the
tracker queued, the model logged and registered, comes after it).
"""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import wait_for
from tests.integration.relay_cli import ROOT, relay, relay_env
from tests.integration.test_interrupts import SMOKE, ledger, stopped

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TINY = [str(SMOKE), "train.steps=2", "crest.generations=1", "run.executor=local"]
LINE = "interrupted while MLflow recorded run cut"


def start_run(workspace: Path, log_file: Path) -> subprocess.Popen:
    """`relay run` of a one-generation, two-step smoke run in the driver itself, in its own process group."""
    command = [sys.executable, "-m", "orchestrator.cli", "run", *TINY, "--run-id", "cut"]
    with log_file.open("w") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=relay_env(workspace), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stages_ended(workspace: Path) -> bool:
    """The run's ledger says FINISHED: its stages are done, and what is left is its MLflow record."""
    return ledger(workspace, "cut").get("status") == "FINISHED"


def building(workspace: Path) -> bool:
    """The store's schema is being built in its temporary file (it holds a table already)."""
    return any(path.exists() and path.stat().st_size > 0 for path in workspace.glob("mlflow.db.creating-*"))


@pytest.mark.parametrize("when", ["blocked", "migrating"])
def test_ctrl_c_while_the_store_is_created_says_one_line_and_the_next_run_works(tmp_path: Path, when: str) -> None:
    workspace, log = tmp_path / "ws", tmp_path / "driver.log"
    workspace.mkdir()
    with (workspace / "mlflow.db.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the store's creation waits: the run's end then waits for it
        driver = start_run(workspace, log)
        wait_for(lambda: stages_ended(workspace) or driver.poll() is not None, 600, "the run's stages to end")
        if when == "migrating":
            fcntl.flock(lock, fcntl.LOCK_UN)
            wait_for(lambda: building(workspace) or driver.poll() is not None, 300, "the store's schema", poll_s=0.01)
        code = stopped(driver, signal.SIGINT, log=log)
    output = log.read_text()

    assert code == 130, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert output.count(LINE) == 1, output[-3000:]
    said = output[output.index(LINE) :]
    assert "the run itself ended FINISHED" in said and "fill it in with: relay resume cut" in said, said
    if when == "blocked":
        assert not (workspace / "mlflow.db").exists(), "a creation that never got its lock made a store"

    after = relay("run", *TINY, "--run-id", "after", workspace=workspace)
    assert after.returncode == 0, (after.stdout + after.stderr)[-3000:]
    assert ledger(workspace, "after")["status"] == "FINISHED"
    assert not list(workspace.glob("mlflow.db.creating-*")), "the interrupted creation's temporary store was left"

    runs = relay("runs", workspace=workspace)
    assert runs.returncode == 0, runs.stderr[-3000:]
    cut_row = next(line for line in runs.stdout.splitlines() if line.startswith("cut "))
    assert "FINISHED*" in cut_row, runs.stdout  # its MLflow record is incomplete, as the run's record says
    resumed = relay("resume", "cut", workspace=workspace)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "relay generations cut" in resumed.stdout, resumed.stdout[-3000:]  # its record filled in: it browses
