"""What a person browsing the MLflow UI reads on a run: its attempt, why it ended, its source, its description."""

import json

from mlflow import MlflowClient

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import COMMAND_FILE, record_path
from orchestrator.engine.records import StageRecord
from orchestrator.tracking.interruptions import close_interrupted
from tests.unit.orchestrator.tracking.test_mlflow_tracker import experiment as experiment  # the fixture
from tests.unit.orchestrator.tracking.test_mlflow_tracker import own_name, tracker_for
from tests.unit.orchestrator.tracking.test_mlflow_tracker import store as store  # the fixture


def record(stage, generation, metrics=None, status="FINISHED"):
    return StageRecord(stage, generation, f"fp-{stage}", False, status, metrics=metrics or {})


def runs_of(store, experiment, kind):
    client = MlflowClient(store[0])
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.`relay.kind` = '{kind}'")


def test_an_interrupted_stage_run_and_its_resumed_attempt_are_told_apart(store, experiment):
    """Ctrl-C mid-stage, then `relay resume`: two `g00/train` runs, one KILLED, one FINISHED, and tags tell them apart."""
    first = tracker_for(store, experiment)
    first.start_pipeline("run-i", "toy", {}, resume=False)
    first.stage_started("g00/train", 0)
    first.end_pipeline("KILLED")
    second = tracker_for(store, experiment)
    second.start_pipeline("run-i", "toy", {}, resume=True)
    second.stage_started("g00/train", 0)
    second.stage_finished(record("g00/train", 0, {"loss": 0.5}))
    second.end_pipeline("FINISHED")
    tags = sorted(
        (r.info.status, r.data.tags.get("relay.attempt"), r.data.tags.get("relay.status"))
        for r in runs_of(store, experiment, "stage")
    )
    assert tags == [("FINISHED", "2", "FINISHED"), ("KILLED", "1", "INTERRUPTED")]
    (gen,) = runs_of(store, experiment, "generation")
    assert (gen.info.status, gen.data.tags["relay.status"]) == ("FINISHED", "FINISHED")


def test_a_sigkilled_drivers_runs_closed_by_relay_ui_and_resumed_are_told_apart(store, experiment):
    """SIGKILL: nothing closes the runs until `relay ui` (close_interrupted) ends them KILLED; each says INTERRUPTED."""
    first = tracker_for(store, experiment)
    first.start_pipeline("run-k", "toy", {}, resume=False)
    first.stage_finished(record("data/split", None))
    first.stage_started("g00/train", 0)  # then SIGKILL: no stage_finished, no end_pipeline
    assert close_interrupted(store[0], experiment, ["run-k"]) == ["run-k"]
    closed = {r.data.tags["relay.kind"]: r for r in runs_of(store, experiment, "generation")}
    closed |= {own_name(r): r for r in runs_of(store, experiment, "stage")}
    assert (closed["generation"].info.status, closed["generation"].data.tags["relay.status"]) == (
        "KILLED",
        "INTERRUPTED",
    )
    assert (closed["g00/train"].info.status, closed["g00/train"].data.tags["relay.status"]) == ("KILLED", "INTERRUPTED")
    assert closed["data/split"].data.tags["relay.status"] == "FINISHED"  # finished before the kill: left alone

    second = tracker_for(store, experiment)
    second.start_pipeline("run-k", "toy", {}, resume=True)
    (gen,) = runs_of(store, experiment, "generation")
    assert (gen.info.status, gen.data.tags["relay.status"]) == ("KILLED", "INTERRUPTED")  # until a stage of it runs
    second.stage_started("g00/train", 0)
    (gen,) = runs_of(store, experiment, "generation")
    assert (gen.info.status, gen.data.tags["relay.status"]) == ("RUNNING", "RUNNING")
    second.stage_finished(record("g00/train", 0))
    second.end_pipeline("FINISHED")
    trains = sorted(
        (r.data.tags["relay.attempt"], r.info.status, r.data.tags["relay.status"])
        for r in runs_of(store, experiment, "stage")
        if own_name(r) == "g00/train"
    )
    assert trains == [("1", "KILLED", "INTERRUPTED"), ("2", "FINISHED", "FINISHED")]


def test_the_runs_source_is_its_config_file_and_its_descriptions_say_what_each_run_is(store, experiment, tmp_path):
    """The Source column showed "—" and every description was empty."""
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    command = {"config": "pipelines/configs/smoke.yaml", "overrides": ["train.steps=10"]}
    artifacts.write_record(record_path("run-s", COMMAND_FILE), json.dumps(command).encode())
    config = {"pipeline": "crest", "run": {"artifact_uri": artifacts.uri}}
    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-s", "smoke", config, resume=False)
    client = MlflowClient(store[0])
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.tags["mlflow.source.name"] == "pipelines/configs/smoke.yaml"
    assert parent.data.tags["mlflow.source.type"] == "LOCAL"
    assert "`relay run pipelines/configs/smoke.yaml train.steps=10`" in parent.data.tags["mlflow.note.content"]
    for g in (0, 1):
        tracker.stage_finished(record(f"g{g:02d}/evaluate", g, {"balanced_accuracy": 0.5 + g / 4}))
    tracker.end_pipeline("FINISHED")

    note = client.get_run(tracker.parent_run_id).data.tags["mlflow.note.content"]
    assert "| generation | evaluate/balanced_accuracy |" in note
    assert "| 0 | 0.5000 |" in note and "| 1 | 0.7500 |" in note
    assert "`relay run pipelines/configs/smoke.yaml train.steps=10`" in note  # the command stays at the end
    gens = {own_name(r): r for r in runs_of(store, experiment, "generation")}
    assert gens["gen-01"].data.tags["mlflow.note.content"].startswith("Generation 1 of Relay run `run-s`")
    (stage, *_) = runs_of(store, experiment, "stage")
    assert stage.data.tags["mlflow.source.name"] == "pipelines/configs/smoke.yaml"


def test_a_run_ended_before_any_generation_says_so_in_its_description(store, experiment):
    tracker = tracker_for(store, experiment)
    tracker.start_pipeline("run-e", "toy", {}, resume=False)
    tracker.stage_finished(record("data/split", None, {"labeled": 40}))
    tracker.stage_finished(record("g00/train", 0, {"loss": 1.0}))  # training's numbers: not a result
    tracker.end_pipeline("STOPPED")
    note = MlflowClient(store[0]).get_run(tracker.parent_run_id).data.tags["mlflow.note.content"]
    assert "STOPPED" in note and "No generation has finished yet" in note
