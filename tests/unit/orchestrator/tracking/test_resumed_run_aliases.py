"""A finished run's generation aliases all name its own versions, even after another run moved some mid-way.

`relay run A --stop-after g00/train`, then a whole run B, then `relay resume A`: the resume registered
only gen-01, so `@gen-00` stayed on run B's version while `@gen-01` and `@newest` named run A's. Here the
real tracker writes to a real SQLite MLflow store, as those three commands drive it.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.mlflow_tracker import MlflowTracker

NAME = "smoke"


def track(tmp_path: Path, run_id: str, models: dict[int, str], status: str = "FINISHED", resume: bool = False) -> None:
    """One attempt of ``run_id`` that trains each generation of ``models`` (generation -> its bytes' digest)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay", artifact_location=(tmp_path / "mlartifacts").as_uri())
    tracker.start_pipeline(run_id, NAME, {"pipeline": NAME}, resume=resume)
    for generation, digest in models.items():
        stored = tmp_path / f"{digest}.ckpt"
        stored.write_text(digest)
        name = f"g{generation:02d}/model"
        artifact = TrackedArtifact(name, stored.as_uri(), digest, "checkpoint", "model", str(stored))
        stage = f"g{generation:02d}/train"
        tracker.stage_finished(
            StageRecord(stage, generation, f"fp-{stage}", False, "FINISHED", outputs={name: artifact})
        )
    tracker.end_pipeline(status)


def aliases(tmp_path: Path) -> dict[str, str]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return {alias: str(version) for alias, version in client.get_registered_model(NAME).aliases.items()}


def test_a_resumed_run_points_every_alias_back_at_its_own_versions_when_it_finishes(tmp_path: Path) -> None:
    track(tmp_path, "A", {0: "a0" * 16}, status="STOPPED")  # v1 gen-00
    track(tmp_path, "B", {0: "b0" * 16, 1: "b1" * 16})  # v2 gen-00, v3 gen-01
    assert aliases(tmp_path) == {"gen-00": "2", "gen-01": "3", "newest": "3"}
    track(tmp_path, "A", {1: "a1" * 16}, resume=True)  # v4 gen-01
    assert aliases(tmp_path) == {"gen-00": "1", "gen-01": "4", "newest": "4"}


def test_a_cache_hit_that_reused_another_runs_version_gets_that_version_back(tmp_path: Path) -> None:
    """A version of the same bytes is shared: run A's gen-00 reused run C's v1, and gen-00 goes back there."""
    track(tmp_path, "C", {0: "c0" * 16})  # v1 gen-00
    track(tmp_path, "A", {0: "c0" * 16}, status="STOPPED")  # a cache hit: gen-00 stays on v1
    track(tmp_path, "B", {0: "b0" * 16, 1: "b1" * 16})  # v2 gen-00, v3 gen-01
    track(tmp_path, "A", {1: "a1" * 16}, resume=True)  # v4 gen-01
    assert aliases(tmp_path) == {"gen-00": "1", "gen-01": "4", "newest": "4"}


def test_a_stopped_part_leaves_the_aliases_another_run_set(tmp_path: Path) -> None:
    """Only a finished run moves aliases: a part stopped early registers its version and moves none."""
    track(tmp_path, "B", {0: "b0" * 16, 1: "b1" * 16})  # v1 gen-00, v2 gen-01
    track(tmp_path, "A", {0: "a0" * 16}, status="STOPPED")  # v3, no alias yet
    assert aliases(tmp_path) == {"gen-00": "1", "gen-01": "2", "newest": "2"}
