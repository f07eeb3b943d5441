"""MLflow's relay.pipeline tag holds the pipeline kind (`crest`) and relay.name the config's name, as `relay runs`
and Ray job metadata use them; runs written before keep being found, and a resumed one is retagged.

Before, the pipeline run held the name in relay.pipeline, so filtering MLflow by tags.relay.pipeline = 'crest'
found nothing. Against a real sqlite store.
"""

from __future__ import annotations

from pathlib import Path

import torch
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.reading import read_generations
from orchestrator.tracking.sweeps import SweepTracker

CONFIG = {"pipeline": "crest", "name": "smoke", "seed": 0}


def tracker(tmp_path: Path, **kw) -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay", **kw)


def found(tmp_path: Path, query: str) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("relay").experiment_id], query)


def trained(generation: int, model: Path) -> StageRecord:
    torch.save({"state_dict": {"w": torch.ones(2)}, "model": "toy", "num_classes": 2}, model)
    artifact = TrackedArtifact("g00/model", model.as_uri(), "a" * 64, "checkpoint", "model", str(model))
    return stage("g00/train", generation, outputs={"g00/model": artifact})


def stage(name: str, generation: int, **fields) -> StageRecord:
    return StageRecord(
        stage=name, generation=generation, fingerprint="fp", cache_hit=False, status="FINISHED", **fields
    )


def test_the_pipeline_run_and_its_models_are_found_by_the_pipeline_kind(tmp_path: Path) -> None:
    run = tracker(tmp_path, log_models=True)
    run.start_pipeline("smoke-1", "smoke", CONFIG, resume=False)
    run.stage_finished(trained(0, tmp_path / "model.pt"))
    run.end_pipeline("FINISHED")

    (parent,) = found(tmp_path, "tags.`relay.pipeline` = 'crest' and tags.`relay.kind` = 'pipeline'")
    assert parent.info.run_name == "smoke-1" and parent.data.tags["relay.name"] == "smoke"
    client = MlflowClient(run.tracking_uri)
    (model,) = client.search_logged_models([parent.info.experiment_id], filter_string="tags.`relay.pipeline` = 'crest'")
    assert model.tags["relay.name"] == "smoke"
    assert client.get_registered_model("smoke").name == "smoke"  # registered under the config's name, as before


def test_a_run_written_before_is_still_read_and_resumed_and_then_tagged_with_the_kind(tmp_path: Path) -> None:
    """A run of an older Relay: relay.pipeline held the name; the readers find runs by relay.pipeline_run."""
    old = tracker(tmp_path)
    old.start_pipeline("smoke-0", "smoke", CONFIG, resume=False)
    old.stage_finished(stage("g00/evaluate", 0, metrics={"accuracy": 0.5}))
    old.end_pipeline("FAILED")
    client = MlflowClient(old.tracking_uri)
    client.set_tag(old.parent_run_id, "relay.pipeline", "smoke")
    if "relay.name" in client.get_run(old.parent_run_id).data.tags:
        client.delete_tag(old.parent_run_id, "relay.name")

    assert read_generations(old.tracking_uri, "relay", "smoke-0") == (
        "smoke-0",
        [{"generation": 0, "evaluate/accuracy": 0.5}],
    )
    resumed = tracker(tmp_path)
    resumed.start_pipeline("smoke-0", "smoke", CONFIG, resume=True)
    resumed.end_pipeline("FINISHED")
    assert resumed.parent_run_id == old.parent_run_id
    tags = client.get_run(old.parent_run_id).data.tags
    assert (tags["relay.pipeline"], tags["relay.name"]) == ("crest", "smoke")


def test_a_sweep_run_holds_the_kind_and_the_name(tmp_path: Path) -> None:
    sweeps = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", strict=True)
    sweeps.start("smoke-sweep", "smoke", {}, "space: {}\n", output="/ws/tune/smoke-sweep", pipeline_kind="crest")
    (sweep,) = found(tmp_path, "tags.`relay.pipeline` = 'crest' and tags.`relay.kind` = 'sweep'")
    assert sweep.data.tags["relay.name"] == "smoke"
