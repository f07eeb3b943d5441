"""`relay generations` picks its columns without naming any pipeline: those of the pipeline of the run it shows
(from its run record, or a Tune trial's MLflow params), else every metric, one a line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger
from orchestrator.engine.records import StageRecord
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.mlflow_tracker import MlflowTracker

TOY = PipelineSpec(
    name="toy", config_model=dict, build=lambda config: None, summary={"toy accuracy": "evaluate/accuracy"}
)
OTHER = PipelineSpec(
    name="other", config_model=dict, build=lambda config: None, summary={"other loss": "evaluate/loss"}
)
METRICS = {"accuracy": 0.75, "loss": 0.5, "recall/0": 1.0, "recall/1": 0.5}


def tracked(workspace: Path, run_id: str, config: dict) -> None:
    """A pipeline run's generation 0 in the workspace's MLflow store; ``config`` is what it logs as params."""
    tracker = MlflowTracker(f"sqlite:///{workspace / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline(run_id, str(config.get("name", "toy")), config, resume=False)
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics=METRICS))
    tracker.end_pipeline("FINISHED")


def tune_trial(workspace: Path, run_id: str, kind: str) -> None:
    """A trial as `relay tune` leaves it: a ledger named after the config's `name`, no config.yaml record, and
    an MLflow run whose params are its resolved config (`pipeline: KIND`)."""
    tracked(workspace, run_id, {"pipeline": kind, "name": "smoke"})
    store = ArtifactStore(str(workspace / "artifacts"))
    Ledger(store, "smoke", run_id, "v1", 0, None, generations={0: 1}).write(
        "FINISHED", {"g00/evaluate": {"generation": 0, "state": "succeeded", "metrics": {"accuracy": 0.75}}}
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace whose MLflow store holds one pipeline run with one generation, and no `pipeline` param."""
    tracked(tmp_path, "run-g", {})
    return tmp_path


def header(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("generation"))


def test_a_run_whose_pipeline_is_not_known_shows_every_metric_one_a_line(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    """Every metric as a column made a 10-class run's table about 60 columns wide; a class family is one line."""
    assert main(["generations", "--workspace", str(workspace)], pipelines={"toy": TOY}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Run run-g: every metric per generation" in lines[1] and "names an installed pipeline" in lines[1]
    assert [line.split() for line in lines[2:] if not line.startswith("-")] == [
        ["metric", "g00"],
        ["evaluate/accuracy", "0.7500"],
        ["evaluate/loss", "0.5000"],
        ["evaluate/recall/*", "1", "0.500"],
    ]


def test_a_sweep_s_newest_trial_gets_its_pipeline_s_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A trial keeps no run record: the columns came from the store's newest record, so a workspace holding only
    a sweep showed every metric (about 60 columns), and one with an older `relay run` that run's columns."""
    tune_trial(tmp_path, "sweep-a1b2c_00000", "toy")
    assert main(["generations", "--workspace", str(tmp_path)], pipelines={"toy": TOY, "other": OTHER}) == 0
    output = capsys.readouterr().out
    assert "Run sweep-a1b2c_00000:" in output
    assert header(output).split() == ["generation", "toy", "accuracy"] and "0.7500" in output


def test_the_newest_run_s_columns_not_those_of_the_newest_record(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tracked(tmp_path, "run-o", {"pipeline": "other", "name": "other"})
    (tmp_path / "artifacts" / "runs" / "run-o").mkdir(parents=True)
    (tmp_path / "artifacts" / "runs" / "run-o" / "config.yaml").write_text("pipeline: other\n")
    time.sleep(0.01)  # MLflow orders runs by their start, in milliseconds
    tune_trial(tmp_path, "sweep-a1b2c_00000", "toy")
    assert main(["generations", "--workspace", str(tmp_path)], pipelines={"toy": TOY, "other": OTHER}) == 0
    assert header(capsys.readouterr().out).split() == ["generation", "toy", "accuracy"]


def test_the_newest_runs_own_record_gives_the_columns(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    record = workspace / "artifacts" / "runs" / "run-g" / "config.yaml"  # run records live in the artifact store
    record.parent.mkdir(parents=True)
    record.write_text("pipeline: toy\n")
    assert main(["generations", "--workspace", str(workspace)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert "toy accuracy" in header(output) and "0.7500" in output


def test_a_run_naming_no_pipeline_takes_the_newest_records_columns_and_says_so(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    record = workspace / "artifacts" / "runs" / "run-x" / "config.yaml"  # another run's record
    record.parent.mkdir(parents=True)
    record.write_text("pipeline: toy\n")
    assert main(["generations", "--workspace", str(workspace)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert header(output).split() == ["generation", "toy", "accuracy"]
    assert "Run run-g names no installed pipeline" in output and "those of 'toy', the pipeline of the newest" in output
