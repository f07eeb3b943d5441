"""A stage's input roles are data it declares (`Stage.input_roles`): the runner reports them, never reads params.

How a pipeline names its artifacts' roles (Relay's builders put them in ``params["io"]``) is the pipeline's
business; the runner read that key and so knew a convention of a layer above it. It now passes on what the
stage declares, and the declaration stays out of the fingerprint, so every cache in a store stays valid.
"""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.engine.runner import Runner, RunStatus
from orchestrator.errors import PipelineError
from tests.unit.orchestrator.engine.toy import CALLS, RecordingTracker, evaluate, toy


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def with_stages(*stages: Stage) -> Pipeline:
    """The toy pipeline with the stages of the same names replaced by ``stages``."""
    by_name = {stage.name: stage for stage in stages}
    return Pipeline("toy", [by_name.get(s.name, s) for s in toy().stages])


def records_of(pipeline: Pipeline, tmp_path) -> RecordingTracker:
    tracker = RecordingTracker()
    runner = Runner(ArtifactStore(str(tmp_path / "artifacts")), LocalExecutor(), tracker, "v1", seed=0)
    assert runner.run(pipeline, "run-1").status is RunStatus.FINISHED
    return tracker


def test_the_runner_reports_the_roles_the_stage_declares_and_not_what_its_params_say(tmp_path):
    train = dataclasses.replace(toy().stage("g00/train"), params={"lr": 0.5, "io": {"split": "data"}})
    evaluate_ = Stage(
        "g00/evaluate",
        evaluate,
        ("model",),
        ("report",),
        params={"io": {"pretrained": "model"}},
        input_roles={"teacher": "model"},
    )
    tracker = records_of(with_stages(train, evaluate_), tmp_path)
    assert tracker.record("g00/evaluate").input_roles == {"teacher": "model"}, "the declared roles, not params'"
    assert tracker.record("g00/train").input_roles == {}, "the engine reads no roles from params"
    assert tracker.record("data").input_roles == {}


def test_input_roles_are_not_part_of_the_fingerprint():
    stage = Stage("g00/evaluate", evaluate, ("model",), ("report",), params={"io": {"model": "model"}})
    declared = dataclasses.replace(stage, input_roles={"model": "model"})
    assert fingerprint(declared, {"model": "m1"}, "v1") == fingerprint(stage, {"model": "m1"}, "v1")


def test_a_role_given_to_an_artifact_the_stage_does_not_read_is_refused_with_the_fix():
    stray = Stage("g00/evaluate", evaluate, ("model",), ("report",), input_roles={"teacher": "g09/model"})
    with pytest.raises(PipelineError) as info:
        with_stages(stray)
    message = str(info.value)
    assert "'g00/evaluate'" in message and "'teacher'" in message and "'g09/model'" in message
    assert "not one of its inputs (model)" in message and "add it to inputs or drop the role" in message
