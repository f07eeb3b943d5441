"""A resumed run whose stage, a cache hit of another run's, is redone to the same bytes tracks it in full.

Run B's stages were cache hits of run A's, so B's generation run and parent list A's model as an output.
Resuming B after its stored checkpoint was damaged redoes `g00/train`, which makes the same bytes: the
tracker found that model (``same_model``) and linked it again to the generation run and the parent, which
MLflow refused (UNIQUE constraint failed: inputs...), and the stage's registering was skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.mlflow_tracker import MlflowTracker

NAME = "smoke"
DIGEST = "ab" * 32


def tracker(tmp_path: Path, strict: bool) -> MlflowTracker:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowTracker(uri, "relay", strict=strict, artifact_location=(tmp_path / "mlartifacts").as_uri())


def train(tmp_path: Path, cache_hit: bool) -> StageRecord:
    stored = tmp_path / "g00_model.pt"
    stored.write_text("the same weights")
    model = TrackedArtifact("g00/model", stored.as_uri(), DIGEST, "checkpoint", "model", str(stored))
    return StageRecord("g00/train", 0, "fp-g00-train", cache_hit, "FINISHED", outputs={"g00/model": model})


@pytest.mark.parametrize("strict", [False, True])
def test_redoing_a_stage_of_the_same_bytes_links_and_registers_it_without_a_warning(
    tmp_path: Path, strict: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.tracking")
    for run_id, cache_hit in (("A", False), ("B", True)):
        first = tracker(tmp_path, strict)
        first.start_pipeline(run_id, NAME, {"pipeline": NAME}, resume=False)
        first.stage_finished(train(tmp_path, cache_hit))
        first.end_pipeline("STOPPED")
    resumed = tracker(tmp_path, strict)
    resumed.start_pipeline("B", NAME, {"pipeline": NAME}, resume=True)
    resumed.stage_finished(train(tmp_path, cache_hit=False))  # redone: its stored checkpoint was damaged
    resumed.end_pipeline("FINISHED")

    assert "failed" not in caplog.text
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (model,) = client.search_logged_models([client.get_experiment_by_name("relay").experiment_id])
    parent = client.get_run(resumed.parent_run_id)
    stage_runs = client.search_runs(
        [parent.info.experiment_id], "tags.`relay.pipeline_run` = 'B' and tags.`relay.kind` = 'stage'"
    )
    assert len(stage_runs) == 2
    for run in [*stage_runs, parent]:
        outputs = client.get_run(run.info.run_id).outputs.model_outputs
        assert [output.model_id for output in outputs] == [model.model_id]
    assert parent.data.tags["relay.registered_models"] == f"models:/{NAME}/1 (gen-00)"
    assert client.get_registered_model(NAME).aliases == {"gen-00": 1, "newest": 1}
    assert parent.data.tags["relay.status"] == "FINISHED"
