"""On a real local Ray (2 CPUs), a stage body that raises leaves its traceback on the console and in the run record.

Why: a Ray task's exception reaches the driver without its frames (``RayTaskError.cause`` is unpickled,
never raised there), so the run said only ``KeyError: 'pseudo_labels'``. The body's traceback is kept
with the exception where it was raised; one whose pickling drops it falls back on Ray's own traceback.
"""

from __future__ import annotations

import logging

import pytest

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner
from orchestrator.errors import StageError
from tests.unit.orchestrator.engine.test_stage_tracebacks import assert_traceback_kept, failing_pipeline

pytestmark = pytest.mark.integration


class BareError(Exception):
    """An exception whose pickling keeps its message only (as some libraries' do): the body's traceback
    kept with it does not cross from the worker, so the run falls back on Ray's traceback of the task."""

    def __reduce__(self):
        return (type(self), self.args)


def check_threshold(params):
    """The helper the stage body calls, which raises."""
    raise BareError(f"threshold must be in (0, 1); got {params['threshold']}")


def strict_body(ctx, inputs, params):
    """A stage body whose helper raises an exception that pickles bare."""
    return check_threshold(params)


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def test_a_ray_stage_body_that_raises_leaves_its_traceback_in_the_record_and_the_log(
    ray_executor, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator")
    runner = Runner(ArtifactStore(str(tmp_path / "store")), ray_executor, NullTracker(), "v1", seed=0)
    with pytest.raises(StageError) as info:
        runner.run(failing_pipeline(), "run-1")
    assert_traceback_kept(tmp_path / "store", "run-1", info.value, caplog.text)


def test_a_ray_failure_whose_exception_drops_the_body_traceback_keeps_rays(ray_executor, tmp_path) -> None:
    store = tmp_path / "store"
    runner = Runner(ArtifactStore(str(store)), ray_executor, NullTracker(), "v1", seed=0)
    pipeline = Pipeline("strict", [Stage("g00/strict", strict_body, (), ("kept",), params={"threshold": 2})])
    with pytest.raises(StageError) as info:
        runner.run(pipeline, "run-1")
    stored = store / "runs" / "run-1" / "errors" / "g00_strict.txt"
    assert str(info.value).startswith("stage 'g00/strict' failed after 1 attempt(s): BareError: threshold must be")
    assert str(info.value).endswith(f"(traceback: {stored})"), str(info.value)
    text = stored.read_text()
    line = check_threshold.__code__.co_firstlineno + 2
    assert f'{__file__}", line {line}, in check_threshold' in text, text
    assert "\x1b[" not in text, f"terminal colour codes in the stored traceback: {text!r}"
