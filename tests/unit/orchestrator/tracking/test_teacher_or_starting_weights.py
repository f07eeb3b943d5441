"""A model a stage starts from is recorded as its start (`relay.init_from`), not as its teacher.

Every model behind a stage's inputs was tagged `relay.teacher`, and its generation's description called
the model "a student of" it: Knowledge Evolution's gen-01 (which continues from gen-00's weights, its
reset part re-initialised) and a FixMatch started from a pretext encoder read as students of a teacher
none of them has. A distillation teacher and the labeler of a student's pseudo-labels stay teachers.
The real tracker writes to a real SQLite MLflow store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.unit.orchestrator.tracking.test_mlflow_tracker import own_name


@pytest.fixture
def tracked(tmp_path: Path):
    """A started tracker, and a function that tells it a stage finished, its io roles with it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay", artifact_location=(tmp_path / "mlartifacts").as_uri())
    tracker.start_pipeline("run-t", "toy", {"pipeline": "toy"}, resume=False)

    def finish(
        stage: str, generation: int | None, io: dict[str, str], writes: str, kind: str = "model", undeclared=()
    ) -> None:
        """``undeclared``: inputs the stage reads under no declared role (a plug-in's plain ``Stage``)."""
        stored = tmp_path / writes.replace("/", "-")
        stored.write_text(writes)
        artifact = TrackedArtifact(writes, stored.as_uri(), writes.ljust(64, "0"), "checkpoint", kind, str(stored))
        inputs = tuple(name for name in io.values() if name != writes) + tuple(undeclared)
        record = StageRecord(stage, generation, f"fp-{stage}", False, "FINISHED", inputs=inputs)
        record.outputs = {writes: artifact}
        record.input_roles = io  # role -> artifact, as the stage declares them (Stage.input_roles)
        tracker.stage_finished(record)

    yield tracker, finish
    tracker.end_pipeline("FINISHED")


def tree(tracker: MlflowTracker) -> tuple[dict, dict[str, str]]:
    """The runs of the tracker's pipeline run by name, and artifact name -> LoggedModel id."""
    client = MlflowClient(tracker.tracking_uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    runs = {own_name(r): r for r in client.search_runs([experiment])}
    models = {m.tags["relay.artifact"]: m.model_id for m in client.search_logged_models([experiment])}
    return runs, models


def test_knowledge_evolution_continues_from_the_previous_generation_without_a_teacher(tracked) -> None:
    tracker, finish = tracked
    finish("g00/train", 0, {"model": "g00/model"}, "g00/model")
    finish("g00/masks", 0, {"masks": "g00/masks"}, "g00/masks", kind="dataset")
    finish("g01/train", 1, {"model": "g01/model", "previous": "g00/model", "masks": "g00/masks"}, "g01/model")
    runs, models = tree(tracker)
    for name in ("g01/train", "gen-01"):
        assert "relay.teacher" not in runs[name].data.tags, name
        assert runs[name].data.tags["relay.init_from"] == f"models:/{models['g00/model']}", name
    assert runs["gen-01"].data.tags["mlflow.note.content"] == (
        "Generation 1 of Relay run `run-t`: its model `g01/model` was trained without a teacher model. "
        "Its training started from the weights of `g00/model`."
    )


def test_a_pretext_encoder_starts_crest_whose_picks_name_their_labeler_the_teacher(tracked) -> None:
    tracker, finish = tracked
    finish("pretext/pretrain", None, {"model": "pretext/model"}, "pretext/model")
    finish("g00/train", 0, {"model": "g00/model", "pretrained": "pretext/model"}, "g00/model")
    finish("g00/rebalance", 0, {"model": "g00/model", "picks": "g00/picks"}, "g00/picks", kind="dataset")
    io = {"model": "g01/model", "picks": "g00/picks", "pretrained": "pretext/model"}
    finish("g01/train", 1, io, "g01/model")
    runs, models = tree(tracker)
    encoder, labeler = f"models:/{models['pretext/model']}", f"models:/{models['g00/model']}"
    assert "relay.teacher" not in runs["g00/train"].data.tags and "relay.teacher" not in runs["gen-00"].data.tags
    assert runs["g00/train"].data.tags["relay.init_from"] == runs["gen-00"].data.tags["relay.init_from"] == encoder
    assert "was trained without a teacher model" in runs["gen-00"].data.tags["mlflow.note.content"]
    assert runs["g01/train"].data.tags["relay.teacher"] == runs["gen-01"].data.tags["relay.teacher"] == labeler
    assert runs["g01/train"].data.tags["relay.init_from"] == encoder
    assert (
        runs["gen-01"]
        .data.tags["mlflow.note.content"]
        .endswith(
            "its model `g01/model` is a student of `g00/model`. Its training started from the weights of `pretext/model`."
        )
    )


def test_a_distillation_teacher_stays_a_teacher_and_a_branch_leaves_its_generation_as_its_stage_read_it(
    tracked,
) -> None:
    tracker, finish = tracked
    finish("init/import", None, {"model": "init/model"}, "init/model")
    finish("g00/train", 0, {"model": "g00/model", "pretrained": "init/model"}, "g00/model")
    finish("g01/train", 1, {"model": "g01/model", "teacher": "g00/model"}, "g01/model")
    finish("baseline/train", 1, {"model": "baseline/model", "pretrained": "init/model"}, "baseline/model")
    runs, models = tree(tracker)
    teacher = f"models:/{models['g00/model']}"
    assert runs["g01/train"].data.tags["relay.teacher"] == runs["gen-01"].data.tags["relay.teacher"] == teacher
    assert "relay.init_from" not in runs["g01/train"].data.tags and "relay.init_from" not in runs["gen-01"].data.tags
    assert runs["baseline/train"].data.tags["relay.init_from"] == f"models:/{models['init/model']}"
    assert "is a student of `g00/model`." in runs["gen-01"].data.tags["mlflow.note.content"]


def test_an_input_model_without_a_declared_role_is_recorded_as_a_teacher_as_before_roles_existed(tracked) -> None:
    """A plug-in's `Stage` built without `input_roles`: its input model was recorded as the weights it started
    from, a claim nothing declared (a plug-in's distillation would have had no teacher); it reads as a
    teacher, as every input model did before stages declared roles. A declared start stays a start."""
    tracker, finish = tracked
    finish("g00/train", 0, {"model": "g00/model"}, "g00/model")
    finish("g01/train", 1, {"model": "g01/model"}, "g01/model", undeclared=("g00/model",))
    runs, models = tree(tracker)
    assert runs["g01/train"].data.tags["relay.teacher"] == f"models:/{models['g00/model']}"
    assert "relay.init_from" not in runs["g01/train"].data.tags
