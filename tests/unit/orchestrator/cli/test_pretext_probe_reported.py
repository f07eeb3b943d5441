"""The pretext encoder's linear probe (`pretext/probe`, a stage outside every generation) reaches the pipeline run,
the closing table and `relay generations`.

Why: `relay run pipelines/configs/pretext_crest_digits.yaml` ran the probe, whose MLflow stage run held its
balanced accuracy, but the pipeline run had no probe metric and neither table showed it, though README sells
the config "with a linear probe of the encoder".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.cli import main
from orchestrator.engine.records import StageRecord
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.unit.orchestrator.tracking.test_mlflow_tracker import own_name

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
PROBE_METRIC = "pretext/probe/balanced_accuracy"
FAST = [
    "train.steps=4",
    "pretext.steps=4",
    "pretext.batch_size=32",
    "crest.generations=2",
    "run.executor=local",
]


def table_rows(output: str) -> dict[str, list[str]]:
    """The closing table's header and rows (first cell -> cells) after the last `generation` header."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("generation"))
    header = [cell for cell in lines[start].split("  ") if cell.strip()]
    body = [line for line in lines[start + 2 :] if line[:1].isdigit()]
    return {"header": [c.strip() for c in header], **{row.split()[0]: row.split() for row in body}}


def runs_named(client: MlflowClient, experiment: str) -> dict:
    found = client.get_experiment_by_name(experiment)
    return {own_name(run): run for run in client.search_runs([found.experiment_id])}


def test_the_pretext_probe_is_on_the_pipeline_run_and_in_both_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    overrides = [*FAST, f"run.workspace={workspace}", "--run-id", "probe-1"]
    assert main(["run", str(CONFIGS / "pretext_crest_digits.yaml"), *overrides]) == 0
    closing = table_rows(capsys.readouterr().out)

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    by_name = runs_named(client, "relay")
    score = by_name["pretext/probe"].data.metrics["balanced_accuracy"]
    parent = by_name["probe-1"].info.run_id
    history = client.get_metric_history(parent, PROBE_METRIC)
    assert [(point.step, point.value) for point in history] == [(0, pytest.approx(score))]
    assert "pretext/pretrain/loss" not in by_name["probe-1"].data.metrics  # bookkeeping stays on its stage run

    assert "pretext probe" in " ".join(closing["header"])
    column = closing["header"].index("pretext probe")
    assert closing["0"][column] == f"{score:.4f}"
    assert closing["1"][column] == "-"

    assert main(["generations", "--workspace", str(workspace)]) == 0
    shown = table_rows(capsys.readouterr().out)
    assert shown["header"] == closing["header"]
    assert shown["0"] == closing["0"]


def test_a_probe_outside_the_generations_logs_on_the_parent_at_step_0_and_other_stages_do_not(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay", system_metrics=False)
    tracker.start_pipeline("run-p", "crest", {"pipeline": "crest"}, resume=False)
    for stage, metrics in {
        "data/split": {"labeled": 40.0},
        "pretext/pretrain": {"loss": 1.5},
        "pretext/probe": {"balanced_accuracy": 0.65, "accuracy": 0.7},
    }.items():
        tracker.stage_finished(StageRecord(stage, None, f"fp-{stage}", False, "FINISHED", metrics=metrics))
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "fp-e", False, "FINISHED", metrics={"accuracy": 0.8}))
    tracker.end_pipeline("FINISHED")

    client = MlflowClient(uri)
    parent = runs_named(client, "relay")["run-p"]
    assert parent.data.metrics == {
        "pretext/probe/balanced_accuracy": 0.65,
        "pretext/probe/accuracy": 0.7,
        "evaluate/accuracy": 0.8,
    }
    steps = {point.step for key in parent.data.metrics for point in client.get_metric_history(parent.info.run_id, key)}
    assert steps == {0}
