"""A run registers its model versions as it goes, but moves the aliases only when it finishes.

`relay run ... --stop-after g00/train` (or a Ctrl-C, or a failed run) moved `@newest` and `@gen-00` onto the
unevaluated generation-0 model of a run that never finished, while `@gen-01` and `@gen-02` stayed on another
run's versions: the aliases mixed two runs. Here the real tracker writes to a real SQLite MLflow store.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.mlflow_tracker import MlflowTracker

NAME = "smoke"


def track(
    tmp_path: Path, run_id: str, generations: tuple[int, ...], status: str = "FINISHED", resume: bool = False, **kw
) -> MlflowTracker:
    """One attempt of ``run_id`` training each of ``generations`` to run-own bytes, ended with ``status``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay", artifact_location=(tmp_path / "mlartifacts").as_uri(), **kw)
    tracker.start_pipeline(run_id, NAME, {"pipeline": NAME}, resume=resume)
    for generation in generations:
        stored = tmp_path / f"{run_id}-{generation}.pt"
        stored.write_text(f"{run_id} {generation}")
        name = f"g{generation:02d}/model"
        artifact = TrackedArtifact(name, stored.as_uri(), f"{run_id}-{generation}", "checkpoint", "model", str(stored))
        stage = f"g{generation:02d}/train"
        tracker.stage_finished(
            StageRecord(stage, generation, f"fp-{stage}", False, "FINISHED", outputs={name: artifact})
        )
    tracker.end_pipeline(status)
    return tracker


def client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def aliased_runs(tmp_path: Path) -> dict[str, str]:
    """Alias -> the pipeline run whose version it names."""
    registry = client(tmp_path)
    aliases = registry.get_registered_model(NAME).aliases
    return {a: registry.get_model_version(NAME, str(v)).tags["relay.pipeline_run"] for a, v in aliases.items()}


def versions_of(tmp_path: Path, run_id: str) -> list[str]:
    return [
        v.version
        for v in client(tmp_path).search_model_versions(f"name = '{NAME}'")
        if v.tags.get("relay.pipeline_run") == run_id
    ]


ALL_OF_B = {"gen-00": "B", "gen-01": "B", "gen-02": "B", "newest": "B"}


@pytest.mark.parametrize("status", ["STOPPED", "KILLED", "FAILED"])
def test_a_run_that_does_not_finish_registers_its_versions_and_moves_no_alias(tmp_path: Path, status: str) -> None:
    track(tmp_path, "B", (0, 1, 2))
    assert aliased_runs(tmp_path) == ALL_OF_B
    stopped = track(tmp_path, "A", (0,), status=status)  # --stop-after g00/train, a Ctrl-C, a failure
    assert aliased_runs(tmp_path) == ALL_OF_B
    assert len(versions_of(tmp_path, "A")) == 1  # nothing lost: the version is there, and recorded
    recorded = client(tmp_path).get_run(stopped.parent_run_id).data.tags["relay.registered_models"]
    assert recorded == f"models:/{NAME}/4 (gen-00)"


def test_a_stopped_run_resumed_to_its_end_takes_every_alias_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.tracking")
    track(tmp_path, "B", (0, 1, 2))
    track(tmp_path, "A", (0,), status="STOPPED")  # v4 gen-00
    assert aliased_runs(tmp_path) == ALL_OF_B
    track(tmp_path, "A", (1,), status="STOPPED", resume=True)  # v5 gen-01, still not finished
    assert aliased_runs(tmp_path) == ALL_OF_B
    caplog.clear()
    track(tmp_path, "A", (), resume=True)  # the rest of the run, no model left to train
    assert aliased_runs(tmp_path) == {"gen-00": "A", "gen-01": "A", "newest": "A"}
    assert {a: str(v) for a, v in client(tmp_path).get_registered_model(NAME).aliases.items()} == {
        "gen-00": "4",
        "gen-01": "5",
        "newest": "5",
    }
    lines = [r.getMessage() for r in caplog.records if "aliases of model" in r.getMessage()]
    assert lines == [
        f"aliases of model {NAME} now name this run's versions: gen-00 -> version 4, "
        "gen-01 -> version 5, newest -> version 5"
    ]


def test_registering_says_the_alias_moves_when_the_run_finishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.tracking")
    track(tmp_path, "A", (0,), status="STOPPED")
    assert f"registered g00/model as model {NAME} version 1; its alias gen-00 moves there when the run finishes" in [
        r.getMessage() for r in caplog.records
    ]
    assert client(tmp_path).get_registered_model(NAME).aliases == {}


def test_a_tune_trial_registers_nothing_and_moves_no_alias(tmp_path: Path) -> None:
    track(tmp_path, "B", (0, 1))
    track(tmp_path, "trial", (0, 1), register_models=False)
    assert aliased_runs(tmp_path) == {"gen-00": "B", "gen-01": "B", "newest": "B"}
    assert versions_of(tmp_path, "trial") == []
