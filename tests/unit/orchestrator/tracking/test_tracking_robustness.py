"""Tracking under the conditions a tester found it broke: concurrent starts, a failing model log, a resume.

Real sqlite stores and real processes throughout: the bugs were in how MLflow's store behaves.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.common import ensure_experiment
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.unit.orchestrator.tracking.test_mlflow_tracker import lineage_outputs

STARTERS = 3  # processes starting a run on one new workspace at once
ROUNDS = 3  # the race is a matter of timing: a few new workspaces each


def start_a_run(uri: str, run_id: str, go: object, result: object) -> None:
    """One `relay run`'s tracking start, strict so a lost race is an error, not a warning (spawned child)."""
    tracker = MlflowTracker(uri, "relay", strict=True)
    import mlflow  # noqa: F401  # imported before the start signal: the race is the store's creation, not imports

    go.wait(60)
    try:
        tracker.start_pipeline(run_id, "toy", {"seed": 0}, resume=False)
        tracker.end_pipeline("FINISHED")
        result.put((run_id, "ok"))
    except Exception as exc:  # reported to the parent, which asserts on it
        result.put((run_id, f"{type(exc).__name__}: {exc}"))


@pytest.mark.timeout(600)
def test_runs_started_together_on_a_new_workspace_all_get_tracked(tmp_path):
    context = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        uri = f"sqlite:///{tmp_path / f'ws{round_}' / 'mlflow.db'}"
        (tmp_path / f"ws{round_}").mkdir()
        go, result = context.Event(), context.Queue()
        children = [context.Process(target=start_a_run, args=(uri, f"run-{i}", go, result)) for i in range(STARTERS)]
        for child in children:
            child.start()
        go.set()
        outcomes = dict(result.get(timeout=300) for _ in children)
        for child in children:
            child.join(60)
        assert outcomes == {f"run-{i}": "ok" for i in range(STARTERS)}, f"round {round_}"
        client = MlflowClient(uri)
        parents = client.search_runs(
            [client.get_experiment_by_name("relay").experiment_id], "tags.`relay.kind` = 'pipeline'"
        )
        assert sorted(r.info.run_name for r in parents) == [f"run-{i}" for i in range(STARTERS)]


def stage_record(stage: str, generation: int, outputs: dict[str, TrackedArtifact]) -> StageRecord:
    """A finished stage that wrote ``outputs`` (a model: logged and registered)."""
    fingerprint = f"fp-{stage}-{next(iter(outputs.values())).digest[:4]}"
    return StageRecord(
        stage=stage, generation=generation, fingerprint=fingerprint, cache_hit=False, status="FINISHED", outputs=outputs
    )


class CreatedMeanwhile:
    """A real client on which another process creates the experiment between lookup and creation."""

    def __init__(self, client: MlflowClient, other: MlflowClient) -> None:
        self.client, self.other, self.looked = client, other, False

    def get_experiment_by_name(self, name):
        found = self.client.get_experiment_by_name(name)
        if not self.looked:  # the other process wins the race right after this lookup
            self.looked = True
            self.other.create_experiment(name)
        return found

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_ensure_experiment_takes_the_one_another_process_created_meanwhile(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(CreatedMeanwhile(client, MlflowClient(uri)), "relay", None)
    assert experiment_id == client.get_experiment_by_name("relay").experiment_id


def test_a_stage_run_whose_model_fails_to_log_is_still_closed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay")
    tracker.start_pipeline("run-m", "toy", {}, resume=False)
    gone = tmp_path / "gone.pt"  # the checkpoint MLflow is asked to log is not there: log_model raises
    model = TrackedArtifact("g00/model", gone.as_uri(), "a" * 64, "checkpoint", "model", str(gone))
    tracker.stage_started("g00/train", 0)
    tracker.stage_finished(stage_record("g00/train", 0, {"g00/model": model}))
    tracker.end_pipeline("FINISHED")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    (stage,) = client.search_runs([experiment], "tags.`relay.kind` = 'stage'")
    assert stage.info.status == "FINISHED"
    assert client.get_run(tracker.parent_run_id).info.status == "FINISHED"


def test_resume_keeps_newest_on_the_latest_generation(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MlflowTracker(uri, "relay")
    first.start_pipeline("run-n", "toy", {}, resume=False)
    for generation in (0, 1):
        outputs = lineage_outputs(tmp_path, generation)
        name = f"g{generation:02d}/model"
        first.stage_finished(stage_record(f"g{generation:02d}/train", generation, {name: outputs[name]}))
    first.end_pipeline("FAILED")
    client = MlflowClient(uri)
    assert client.get_registered_model("toy").aliases == {}  # a failed run moves no alias

    resumed = MlflowTracker(uri, "relay")
    resumed.start_pipeline("run-n", "toy", {}, resume=True)
    (tmp_path / "again").mkdir()
    model = lineage_outputs(tmp_path / "again", 0)["g00/model"]  # generation 0 retrained: other bytes
    model = TrackedArtifact(model.name, model.uri, "b" * 64, model.kind, model.lineage, model.local_path)
    resumed.stage_finished(stage_record("g00/train", 0, {"g00/model": model}))
    resumed.end_pipeline("FINISHED")
    aliases = client.get_registered_model("toy").aliases
    assert aliases["gen-00"] == 3  # the retrained generation 0 is registered again
    assert aliases["newest"] == aliases["gen-01"] == 2  # and `newest` stays on generation 1


def test_the_lock_file_sits_beside_the_database(tmp_path):
    from orchestrator.tracking.common import store_lock

    db = tmp_path / "new" / "mlflow.db"
    with store_lock(f"sqlite:///{db}"):
        assert Path(f"{db}.lock").exists()
    assert not db.exists()  # the lock alone creates no database
