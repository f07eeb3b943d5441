"""`relay ui` ends KILLED the MLflow runs a driver left RUNNING when it was killed (SIGKILL); `relay resume` reopens them.

The killed driver is a real process: it opens the run's MLflow runs and its ledger as `relay run`
does, then kills itself with SIGKILL, so nothing of its own closes them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.records.workspace import close_interrupted_runs
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, TAG_STATUS, mlflow_client
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.sweeps import SweepTracker

DRIVER = """
import os, signal, sys
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger
from orchestrator.tracking.mlflow_tracker import MlflowTracker

workspace, run_id = sys.argv[1], sys.argv[2]
tracker = MlflowTracker(f"sqlite:///{workspace}/mlflow.db", "relay", system_metrics=False)
tracker.start_pipeline(run_id, "toy", {"pipeline": "toy"}, resume=False)
tracker.stage_started("g00/train", 0)
Ledger(ArtifactStore(f"{workspace}/artifacts"), "toy", run_id, "v1", 0, None, generations={0: 1}).write(
    "RUNNING", {"g00/train": {"generation": 0, "state": "running"}}
)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_driver(workspace: Path, run_id: str) -> None:
    """A driver that opened the run's MLflow runs and ledger, then died by SIGKILL."""
    done = subprocess.run([sys.executable, "-c", DRIVER, str(workspace), run_id], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr


def live_run(workspace: Path, run_id: str) -> MlflowTracker:
    """A run whose driver is this (living) process, mid-stage."""
    tracker = MlflowTracker(tracking_uri(workspace), "relay", system_metrics=False)
    tracker.start_pipeline(run_id, "toy", {"pipeline": "toy"}, resume=False)
    tracker.stage_started("g00/train", 0)
    Ledger(ArtifactStore(str(workspace / "artifacts")), "toy", run_id, "v1", 0, None, generations={0: 1}).write(
        "RUNNING", {"g00/train": {"generation": 0, "state": "running"}}
    )
    return tracker


def tracking_uri(workspace: Path) -> str:
    return f"sqlite:///{workspace}/mlflow.db"


def statuses(workspace: Path, run_id: str) -> dict[str, str]:
    """kind (pipeline, generation, stage) -> MLflow status of the run's MLflow runs."""
    client = mlflow_client(tracking_uri(workspace))
    experiment = client.get_experiment_by_name("relay").experiment_id
    found = client.search_runs([experiment], f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}'")
    return {run.data.tags[TAG_KIND]: run.info.status for run in found}


def parent_tag(workspace: Path, run_id: str) -> str | None:
    client = mlflow_client(tracking_uri(workspace))
    experiment = client.get_experiment_by_name("relay").experiment_id
    query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}' and tags.`{TAG_KIND}` = 'pipeline'"
    return client.search_runs([experiment], query)[0].data.tags.get(TAG_STATUS)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    killed_driver(tmp_path, "killed")
    return tmp_path


def test_a_killed_drivers_runs_end_killed_and_a_living_ones_stay_running(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before: the killed run's parent, generation and stage read RUNNING in the UI for good."""
    tracker = live_run(workspace, "alive")
    assert set(statuses(workspace, "killed").values()) == {"RUNNING"}
    close_interrupted_runs(argparse.Namespace(workspace=str(workspace), experiment="relay"), tracking_uri(workspace))
    assert statuses(workspace, "killed") == {"pipeline": "KILLED", "generation": "KILLED", "stage": "KILLED"}
    assert parent_tag(workspace, "killed") == "INTERRUPTED"
    assert set(statuses(workspace, "alive").values()) == {"RUNNING"}  # its driver (this process) lives
    assert "Marked KILLED in MLflow" in capsys.readouterr().out
    tracker.end_pipeline("FINISHED")


def test_a_resume_reopens_the_runs_the_ui_closed(workspace: Path) -> None:
    close_interrupted_runs(argparse.Namespace(workspace=str(workspace), experiment="relay"), tracking_uri(workspace))
    tracker = MlflowTracker(tracking_uri(workspace), "relay", system_metrics=False)
    tracker.start_pipeline("killed", "toy", {"pipeline": "toy"}, resume=True)
    assert statuses(workspace, "killed")["pipeline"] == "RUNNING"  # the same parent, reattached
    assert parent_tag(workspace, "killed") == "RUNNING"
    tracker.end_pipeline("FINISHED")
    assert statuses(workspace, "killed")["pipeline"] == "FINISHED"


def test_another_experiment_is_neither_searched_nor_created(workspace: Path) -> None:
    close_interrupted_runs(argparse.Namespace(workspace=str(workspace), experiment="other"), tracking_uri(workspace))
    assert set(statuses(workspace, "killed").values()) == {"RUNNING"}
    assert mlflow_client(tracking_uri(workspace)).get_experiment_by_name("other") is None


SWEEP_DRIVER = """
import os, signal, sys
from orchestrator.tracking.sweeps import SweepTracker

workspace, name = sys.argv[1], sys.argv[2]
SweepTracker(f"sqlite:///{workspace}/mlflow.db", "relay", strict=True).start(name, "toy", {}, "mode: max\\n", "/out")
os.kill(os.getpid(), signal.SIGKILL)
"""


def sweep_runs(workspace: Path) -> dict[str, tuple[str, str | None]]:
    """sweep name -> (MLflow status, relay.status tag) of every sweep run."""
    client = mlflow_client(tracking_uri(workspace))
    experiment = client.get_experiment_by_name("relay").experiment_id
    found = client.search_runs([experiment], f"tags.`{TAG_KIND}` = 'sweep'")
    return {run.info.run_name: (run.info.status, run.data.tags.get(TAG_STATUS)) for run in found}


def test_a_killed_sweeps_run_ends_killed_and_a_resumed_one_is_running_again(tmp_path: Path, capsys) -> None:
    """Before: the sweep's parent read RUNNING in the UI for good, while its trials were closed as interrupted."""
    done = subprocess.run([sys.executable, "-c", SWEEP_DRIVER, str(tmp_path), "killed-sweep"], capture_output=True)
    assert done.returncode == -9, done.stderr
    living = SweepTracker(tracking_uri(tmp_path), "relay", strict=True)
    living.start("living-sweep", "toy", {}, "mode: max\n", "/other")  # its driver is this process
    args = argparse.Namespace(workspace=str(tmp_path), experiment="relay")
    close_interrupted_runs(args, tracking_uri(tmp_path))
    assert sweep_runs(tmp_path) == {"killed-sweep": ("KILLED", "INTERRUPTED"), "living-sweep": ("RUNNING", None)}
    assert "the sweep's driver died; `relay tune CONFIG --resume` goes on): killed-sweep" in capsys.readouterr().out
    resumed = SweepTracker(tracking_uri(tmp_path), "relay", strict=True)
    resumed.start("killed-sweep", "toy", {}, "mode: max\n", "/out", resume=True)
    close_interrupted_runs(args, tracking_uri(tmp_path))  # now driven by this process: left running
    assert sweep_runs(tmp_path)["killed-sweep"] == ("RUNNING", None)
