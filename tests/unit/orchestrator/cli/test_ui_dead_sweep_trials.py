"""`relay ui` closes a killed sweep's trials with it, and names how they go on: `relay tune CONFIG --resume`.

The killed driver is a real process: it opens a sweep's MLflow run and two trials' runs as `relay tune`
does (one trial has a ledger, the other was killed just after it started and has none), then kills
itself with SIGKILL, so nothing of its own closes them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.records.workspace import close_interrupted_runs
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, TAG_STATUS, mlflow_client
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.sweeps import SweepTracker

SWEEP_DRIVER = """
import json, os, signal, sys
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger, record_path
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.sweeps import SweepTracker

workspace, sweep = sys.argv[1], sys.argv[2]
uri = f"sqlite:///{workspace}/mlflow.db"
parent = SweepTracker(uri, "relay", strict=True).start(sweep, "toy", {}, "mode: max\\n", "/out")
store = ArtifactStore(f"{workspace}/artifacts")
for trial, has_ledger in ((f"{sweep}-t_00000", True), (f"{sweep}-t_00001", False)):
    tracker = MlflowTracker(uri, "relay", strict=True, parent_run_id=parent)
    tracker.start_pipeline(trial, "toy", {"pipeline": "toy"}, resume=True)
    tracker.stage_started("g00/train", 0)
    record = {"sweep": sweep, "folder": "/out", "pipeline": "toy"}
    store.write_record(record_path(trial, "sweep.json"), json.dumps(record).encode())
    if has_ledger:
        Ledger(store, "toy", trial, "v1", 0, None, generations={0: 1}).write(
            "RUNNING", {"g00/train": {"generation": 0, "state": "running"}}
        )
os.kill(os.getpid(), signal.SIGKILL)
"""


def tracking_uri(workspace: Path) -> str:
    return f"sqlite:///{workspace}/mlflow.db"


def runs_of(workspace: Path, run_id: str) -> dict[str, tuple[str, str | None]]:
    """kind (pipeline, generation, stage) -> (MLflow status, relay.status) of a run's MLflow runs."""
    client = mlflow_client(tracking_uri(workspace))
    experiment = client.get_experiment_by_name("relay").experiment_id
    found = client.search_runs([experiment], f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}'")
    return {run.data.tags[TAG_KIND]: (run.info.status, run.data.tags.get(TAG_STATUS)) for run in found}


@pytest.fixture
def killed_sweep(tmp_path: Path) -> Path:
    done = subprocess.run([sys.executable, "-c", SWEEP_DRIVER, str(tmp_path), "ks"], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    return tmp_path


def test_a_killed_sweeps_trial_is_continued_by_relay_tune_not_relay_resume(
    killed_sweep: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before: `Marked KILLED in MLflow (their driver died; relay resume RUN_ID goes on): ks-t_00000`, a command
    that refuses a trial of a sweep."""
    close_interrupted_runs(
        argparse.Namespace(workspace=str(killed_sweep), experiment="relay"), tracking_uri(killed_sweep)
    )
    out = capsys.readouterr().out
    assert "relay resume" not in out
    assert "(trials whose sweep's driver died; `relay tune CONFIG --resume` goes on): ks-t_00000\n" in out
    assert set(runs_of(killed_sweep, "ks-t_00000").values()) == {("KILLED", "INTERRUPTED")}


def test_a_killed_sweeps_trial_without_a_ledger_is_closed_with_it(
    killed_sweep: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before: a trial killed just after it started (its run folder holds only sweep.json) read RUNNING for good
    under its KILLED sweep, and `relay ui` named only the sweep."""
    close_interrupted_runs(
        argparse.Namespace(workspace=str(killed_sweep), experiment="relay"), tracking_uri(killed_sweep)
    )
    assert runs_of(killed_sweep, "ks-t_00001") == {
        "pipeline": ("KILLED", "INTERRUPTED"),
        "generation": ("KILLED", "INTERRUPTED"),
        "stage": ("KILLED", "INTERRUPTED"),
    }
    line = "(the sweep's driver died; `relay tune CONFIG --resume` goes on): ks, with its open trial(s): ks-t_00001\n"
    assert line in capsys.readouterr().out


def test_a_living_sweeps_trials_stay_running(tmp_path: Path) -> None:
    sweep = SweepTracker(tracking_uri(tmp_path), "relay", strict=True)  # its driver is this process
    parent = sweep.start("living", "toy", {}, "mode: max\n", "/other")
    trial = MlflowTracker(tracking_uri(tmp_path), "relay", strict=True, parent_run_id=parent)
    trial.start_pipeline("living-t_00000", "toy", {"pipeline": "toy"}, resume=True)
    trial.stage_started("g00/train", 0)
    close_interrupted_runs(argparse.Namespace(workspace=str(tmp_path), experiment="relay"), tracking_uri(tmp_path))
    assert {status for status, _ in runs_of(tmp_path, "living-t_00000").values()} == {"RUNNING"}
    trial.end_pipeline("FINISHED")
