"""On a real local Ray (2 CPUs, gloo), a data-parallel stage whose body raises on every rank fails with that
exception and the body's traceback, as a 1-worker stage does.

Why: Ray Train wraps every rank's failure in one ``WorkerGroupError`` whose message is cut mid-traceback,
so the run said ``WorkerGroupError: Training failed due to worker errors`` and the kept traceback had none
of the body's frames. ``fit_stage`` now raises the first failing rank's own exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.dag import Pipeline, Resources, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner
from orchestrator.errors import StageError
from pipelines.builders import crest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "smoke.yaml"


def check_batch(rank):
    """The helper the stage body calls, which raises on every rank."""
    raise ValueError("boom")


def failing_train(ctx, inputs, params):
    """A data-parallel stage body whose helper raises."""
    return check_batch(ctx.rank)


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def test_a_two_worker_stage_that_raises_fails_with_the_body_exception_and_traceback(ray_executor, tmp_path) -> None:
    config = validate_config(crest.CrestConfig, apply_overrides(load_yaml(SMOKE), []))
    split = crest.build(config).stage("data/split")
    train = Stage(
        "g00/boom",
        failing_train,
        ("data/split",),
        ("boom/model",),
        resources=Resources(num_cpus=1, workers=2),
    )
    store = tmp_path / "store"
    runner = Runner(ArtifactStore(str(store)), ray_executor, NullTracker(), "v1", seed=0)
    with pytest.raises(StageError) as info:
        runner.run(Pipeline("boom", [split, train]), "run-1")
    message = str(info.value)
    assert message.startswith("stage 'g00/boom' failed after 1 attempt(s): ValueError: boom"), message
    assert "WorkerGroupError" not in message, message
    text = (store / "runs" / "run-1" / "errors" / "g00_boom.txt").read_text()
    line = check_batch.__code__.co_firstlineno + 2
    assert f'{__file__}", line {line}, in check_batch' in text, text
    assert "WorkerGroupError" not in text, text
