"""Model sources found on the driver: a file, a model in a real MLflow registry, a stage of an earlier run's ledger."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from orchestrator.config import ModelSource, RunSettings, TrackingSettings, tracking_uri
from orchestrator.dag import StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.digests import digest_of
from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.errors import ConfigError
from orchestrator.sources import read_bytes, resolve_source
from orchestrator.tracking.mlflow_tracker import MlflowTracker


def settings(workspace: Path) -> tuple[RunSettings, TrackingSettings]:
    return RunSettings(workspace=str(workspace)), TrackingSettings()


def test_the_forms_a_config_may_name() -> None:
    assert ModelSource.parse("models:/crest@gen-02") == ModelSource("registry", "crest", "gen-02")
    assert ModelSource.parse("models:/crest/3") == ModelSource("registry", "crest", "3")
    assert ModelSource.parse("run:crest-1/g00/train") == ModelSource("run", "crest-1", "g00/train")
    assert ModelSource.parse("s3://bucket/w.pt") == ModelSource("file", "s3://bucket/w.pt")
    assert str(ModelSource.parse("models:/crest/3")) == "models:/crest/3"
    for bad in ("models:/crest", "run:crest-1", "", "ftp:x"):
        with pytest.raises(ValueError, match="models:/NAME@ALIAS"):
            ModelSource.parse(bad)


def test_a_file_is_found_with_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    found = resolve_source(str(weights), *settings(tmp_path))
    assert found.location == str(weights) and found.digest == hashlib.sha256(b"weights").hexdigest()
    assert read_bytes(found.location) == b"weights"


def test_a_missing_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"init.source: no weights file at .*nope.pt"):
        resolve_source(str(tmp_path / "nope.pt"), *settings(tmp_path))


def _finished_run(workspace: Path, run_id: str, stage: str, state: str = "succeeded") -> tuple[ArtifactStore, str]:
    """A run whose `stage` stored one checkpoint: the artifact store's manifest and the run's ledger."""
    store = ArtifactStore(str(workspace / "artifacts"))
    result = StageResult(outputs={"g00/model": {"state_dict": {"w": torch.ones(2)}, "model": "toy"}})
    manifest = store.write_stage("f" * 64, stage, result)
    ledger = {
        "stages": {
            "data/split": {"state": "cached", "fingerprint": "e" * 64},
            stage: {"state": state, "fingerprint": "f" * 64},
        }
    }
    (workspace / "runs" / run_id).mkdir(parents=True)
    (workspace / "runs" / run_id / "ledger.json").write_text(json.dumps(ledger))
    return store, manifest.outputs["g00/model"].digest


def test_a_run_stage_is_found_through_the_ledger_and_the_manifest(tmp_path: Path) -> None:
    _, digest = _finished_run(tmp_path, "run-1", "g00/train")
    found = resolve_source("run:run-1/g00/train", *settings(tmp_path))
    assert digest_of(read_bytes(found.location)) == digest, "the manifest's checkpoint, by its own (xxh3) digest"
    assert found.digest == hashlib.sha256(read_bytes(found.location)).hexdigest(), "sha256: what the import checks"
    assert "g00/model of run run-1" in found.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run:run-2/g00/train", "no run 'run-2' in the workspace"),
        ("run:run-1/g09/train", "has no stage 'g09/train'; its stages: data/split, g00/train"),
        ("run:run-1/data/split", "the outputs of 'data/split' of run 'run-1' are gone"),
    ],
)
def test_what_a_run_source_cannot_find_is_named(tmp_path: Path, text: str, expected: str) -> None:
    _finished_run(tmp_path, "run-1", "g00/train")
    with pytest.raises(ConfigError, match=expected):
        resolve_source(text, *settings(tmp_path))


def test_an_unfinished_stage_says_how_to_finish_it(tmp_path: Path) -> None:
    _finished_run(tmp_path, "run-1", "g00/train", state="running")
    with pytest.raises(ConfigError, match=r"is running; finish it first \(relay resume run-1\)"):
        resolve_source("run:run-1/g00/train", *settings(tmp_path))


def test_a_registered_model_is_found_by_alias_and_by_version(tmp_path: Path) -> None:
    run, tracking = settings(tmp_path)
    checkpoint = tmp_path / "g00-model.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "model": "toy", "num_classes": 2}, checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    tracker = MlflowTracker(tracking_uri(run, tracking), "relay")
    tracker.start_pipeline("toy-1", "toy", {}, resume=False)
    artifact = TrackedArtifact("g00/model", checkpoint.as_uri(), digest, "checkpoint", "model", str(checkpoint))
    tracker.stage_finished(StageRecord("g00/train", 0, "fp", False, "FINISHED", outputs={"g00/model": artifact}))
    tracker.end_pipeline("FINISHED")
    for text in ("models:/toy@gen-00", "models:/toy@newest", "models:/toy/1"):
        found = resolve_source(text, run, tracking)
        assert found.digest == digest and read_bytes(found.location) == checkpoint.read_bytes()
    with pytest.raises(ConfigError, match="no models:/toy@gen-07 in the model registry"):
        resolve_source("models:/toy@gen-07", run, tracking)


def test_a_registry_source_without_a_store_creates_none(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no MLflow store at"):
        resolve_source("models:/toy@newest", *settings(tmp_path))
    assert not (tmp_path / "mlflow.db").exists()
