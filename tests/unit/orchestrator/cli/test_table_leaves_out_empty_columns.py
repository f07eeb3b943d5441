"""The per-generation table leaves out a summary column that no generation has a value for.

Why: a pipeline's summary names every column any of its configurations reports, so the
class-balanced demo (pipeline ke: one generation, no KELS masks, no compute-matched baseline)
closed with slim_accuracy, slim_params and 'baseline (compute-matched)' as columns of '-' only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.records import StageRecord
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.mlflow_tracker import MlflowTracker

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
SPARSE = PipelineSpec(
    name="sparse",
    config_model=dict,
    build=lambda config: None,
    summary={
        "accuracy": "evaluate/accuracy",
        "slim_accuracy": "evaluate/slim_accuracy",
        "recall": "evaluate/recall/*",
        "kept": "rebalance/kept/*",
    },
)


def header(output: str) -> list[str]:
    return next(line for line in output.splitlines() if line.startswith("generation")).split()


def test_relay_run_of_the_class_balanced_demo_shows_no_ke_only_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = ["run.executor=local", "train.steps=4", "train.warmup_steps=1", f"run.workspace={tmp_path / 'ws'}"]
    assert main(["run", str(CONFIGS / "class_balanced_digits.yaml"), *overrides]) == 0
    columns = header(capsys.readouterr().out)
    assert columns[:2] == ["generation", "balanced_accuracy"] and "dense_params" in columns
    assert not {"slim_accuracy", "slim_params", "baseline"} & set(columns), columns


def test_relay_generations_leaves_out_a_column_and_a_family_no_generation_has(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline("run-s", "sparse", {"pipeline": "sparse"}, resume=False)
    metrics = {"accuracy": 0.75, "recall/0": 1.0, "recall/1": 0.5}
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics=metrics))
    tracker.end_pipeline("FINISHED")
    assert main(["generations", "--workspace", str(tmp_path)], pipelines={"sparse": SPARSE}) == 0
    output = capsys.readouterr().out
    assert header(output) == ["generation", "accuracy", "recall"]
    assert "0.7500" in output and "1 0.500" in output
