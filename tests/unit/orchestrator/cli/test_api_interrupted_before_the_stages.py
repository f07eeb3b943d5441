"""A run stopped before its stages started reads INTERRUPTED (or FAILED) while the process that ran it lives.

QA drove Relay from a notebook: a Ctrl-C while Ray started said "interrupted before the stages started; resume
with: relay resume ID", yet the run had no ledger, only its command record naming the driver's pid, the notebook's
kernel, which lives on. So `relay runs` and ``relay.runs()`` showed it STARTING, and ``relay.resume(ID)`` was refused
("still running (driver pid N) ... kill N") in the kernel and from any other process, until the kernel restarted.
The CLI's process ends, which hid it there. Here the Ctrl-C is a real KeyboardInterrupt raised where Ray's start
runs (the executor's warm-up; the stages run in this process, ``run.executor=local``), with real stores and the
real `relay` command in another process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import api
from orchestrator.engine.executors import LocalExecutor

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
LOCAL = ["run.executor=local", "train.steps=3", "crest.generations=1", "tracking.system_metrics=false"]


def stopped_at_rays_start(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Raise ``error`` where the run starts Ray, after its record and MLflow run were written."""

    def warm_up(self: LocalExecutor, pipeline: object) -> None:
        raise error

    monkeypatch.setattr(LocalExecutor, "warm_up", warm_up)


def status_elsewhere(workspace: Path, run_id: str) -> str:
    """The run's status as `relay runs` shows it from another process, while this one (its driver) lives."""
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "runs", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    (row,) = [line.split() for line in shown.stdout.splitlines() if line.startswith(f"{run_id} ")]
    return row[2]


def test_a_run_interrupted_while_ray_starts_reads_interrupted_and_resumes_while_its_caller_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_store_settings: None
) -> None:
    workspace = tmp_path / "ws"
    with monkeypatch.context() as patched:
        stopped_at_rays_start(patched, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            api.run(SMOKE, LOCAL, workspace=workspace, run_id="cut")
    assert [(row["run_id"], row["status"]) for row in api.runs(workspace)] == [("cut", "INTERRUPTED")]
    assert status_elsewhere(workspace, "cut") == "INTERRUPTED"
    finished = api.resume("cut", workspace)
    assert (finished.status, [row["generation"] for row in finished.generations]) == ("FINISHED", [0])


def test_a_resume_interrupted_while_ray_starts_can_be_resumed_again_here_and_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_store_settings: None
) -> None:
    """A resume claims the run (its ledger says RUNNING with this pid, its folder locked): an interrupted one
    gives both up, so the next resume, in this process or in another, takes the run."""
    workspace = tmp_path / "ws"
    stopped = api.run(SMOKE, LOCAL, workspace=workspace, run_id="cut", stop_after="g00/train")
    with monkeypatch.context() as patched:
        stopped_at_rays_start(patched, KeyboardInterrupt())
        for _ in range(2):  # the second is let in, as the first gave its claim up
            with pytest.raises(KeyboardInterrupt):
                api.resume("cut", workspace)
            assert status_elsewhere(workspace, "cut") == api.runs(workspace)[0]["status"] == "INTERRUPTED"
    resumed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "resume", "cut", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert api.runs(workspace)[0]["status"] == "FINISHED" and stopped.status == "STOPPED"


def test_a_run_that_failed_before_its_stages_reads_failed_while_its_caller_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_store_settings: None
) -> None:
    """A failure after Ray's start and before the Runner has the run (here its progress board cannot be opened)."""
    workspace = tmp_path / "ws"

    def open_progress(self: LocalExecutor, run_id: str) -> None:
        raise OSError("no room for the progress board")

    with monkeypatch.context() as patched:
        patched.setattr(LocalExecutor, "open_progress", open_progress)
        with pytest.raises(OSError, match="no room"):
            api.run(SMOKE, LOCAL, workspace=workspace, run_id="cut")
    assert status_elsewhere(workspace, "cut") == api.runs(workspace)[0]["status"] == "FAILED"
    assert api.resume("cut", workspace).status == "FINISHED"
