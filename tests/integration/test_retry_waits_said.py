"""A stage attempt Ray cannot place is said to wait, the retry too (RayExecutor on a real local Ray).

Before, the warning came once per stage: a stage retried after its node was lost (with the custom
resource only that node had) waited silently on its second attempt. Here the custom resource is
one no node has, so neither attempt can ever be placed; each is cancelled once its warning came.
"""

import logging
import threading
import time

import pytest
import ray

from orchestrator.dag import Resources, Stage, StageResult
from orchestrator.engine import placement_warnings, ray_executor
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.task import StageTask

pytestmark = pytest.mark.integration

SAID_WITHIN_S = 120.0  # a bound on a wait for the warning (never asserted on): 2 loaded cores


def never_runs(ctx, inputs, params):
    return StageResult(outputs={"done": {}})


@pytest.fixture
def executor():
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    started = RayExecutor(num_cpus=1)
    yield started
    started.shutdown()


def wait_cancelled_once_said(executor: RayExecutor, task: StageTask, said: str, caplog) -> None:
    """Submit ``task``, cancel it once ``said`` is logged (or after SAID_WITHIN_S), and wait for it to end."""
    ref = executor.submit(task)

    def cancel_once_said() -> None:
        deadline = time.monotonic() + SAID_WITHIN_S
        while said not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.2)
        ray.cancel(ref, force=True)

    canceller = threading.Thread(target=cancel_once_said, daemon=True)
    canceller.start()
    executor.wait([ref])
    canceller.join()


def test_each_attempt_that_cannot_be_placed_is_said_to_wait(executor, tmp_path, caplog, monkeypatch) -> None:
    monkeypatch.setattr(placement_warnings, "WAITING_WARN_S", 0.0)
    monkeypatch.setattr(ray_executor, "REFIT_EVERY_S", 1.0)
    caplog.set_level(logging.WARNING, logger="orchestrator")
    stage = Stage("g01/train", never_runs, (), ("done",), resources=Resources(num_cpus=1, custom={"lost_node": 1}))
    first = StageTask(stage, "fp", {}, str(tmp_path), "run-retry", seed=0, attempt=1)
    wait_cancelled_once_said(executor, first, "g01/train has waited", caplog)
    assert "g01/train has waited 0 s for a place: it asks for 1 CPU and 0 GPU a worker and 1 lost_node" in caplog.text
    assert "The cluster has no lost_node at all now" in caplog.text
    wait_cancelled_once_said(executor, first.retry(), "g01/train (attempt 2) has waited", caplog)
    assert "g01/train (attempt 2) has waited 0 s for a place" in caplog.text, caplog.text[-3000:]
