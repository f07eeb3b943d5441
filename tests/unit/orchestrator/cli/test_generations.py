"""`relay generations` picks its columns without naming any pipeline: the run's own, the newest run's, or every metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.records import StageRecord
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.mlflow_tracker import MlflowTracker

TOY = PipelineSpec(
    name="toy", config_model=dict, build=lambda config: None, summary={"toy accuracy": "evaluate/accuracy"}
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace whose MLflow store holds one pipeline run with one generation."""
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline("run-g", "toy", {}, resume=False)
    tracker.stage_finished(
        StageRecord(
            stage="g00/evaluate",
            generation=0,
            fingerprint="f",
            cache_hit=False,
            status="FINISHED",
            metrics={"accuracy": 0.75, "loss": 0.5},
        )
    )
    tracker.end_pipeline("FINISHED")
    return tmp_path


def header(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("generation"))


def test_without_run_records_every_metric_is_a_column(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["generations", "--workspace", str(workspace)], pipelines={"toy": TOY}) == 0
    assert header(capsys.readouterr().out).split() == ["generation", "evaluate/accuracy", "evaluate/loss"]


def test_the_newest_run_records_pipeline_gives_the_columns(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    record = workspace / "artifacts" / "runs" / "run-g" / "config.yaml"  # run records live in the artifact store
    record.parent.mkdir(parents=True)
    record.write_text("pipeline: toy\n")
    assert main(["generations", "--workspace", str(workspace)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert "toy accuracy" in header(output) and "0.7500" in output
