"""Which of Ray's failures mean a stage lost its worker (``lost_worker``), and so get a lost worker's retries.

The exceptions are Ray's own classes, built as Ray builds them when it reads a failed object
(``ray._private.serialization``): no cluster is needed to tell one from another.
"""

from __future__ import annotations

import pytest
from ray.exceptions import NodeDiedError, OutOfMemoryError

from orchestrator.engine.policy import Decision, decide
from orchestrator.engine.ray_task import as_lost, lost_worker
from orchestrator.errors import WorkerLostError

# Of the shape the raylet's memory monitor gives the worker it killed (Ray carries it as the error's message).
OOM_MESSAGE = (
    "Task was killed due to the node running low on memory.\n"
    "Memory on the node (IP: 10.0.0.2, ID: 6a2c) where the task (task ID: 1f3e, name=g01/pseudo_label, "
    "pid=4242, memory used=3.10GB) was running was 7.60GB / 8.00GB (0.95), which exceeds the memory usage "
    "threshold of 0.95. Ray killed this worker (ID: 77bd) because it was the most recently scheduled task."
)


def out_of_memory() -> OutOfMemoryError:
    """What ``ray.get`` raises for a task (or an actor's call) whose worker Ray's memory monitor killed."""
    return OutOfMemoryError(OOM_MESSAGE)


def test_an_out_of_memory_kill_of_the_stages_task_is_a_lost_worker_and_retried():
    """``ray.get`` of the stage's task raises the OutOfMemoryError itself (``RayExecutor._outcome``)."""
    error = as_lost("g01/pseudo_label", out_of_memory())
    assert isinstance(error, WorkerLostError)
    assert error.cause == "OutOfMemoryError: Task was killed due to the node running low on memory."
    assert decide(error, attempt=1, max_retries=0) is Decision.RETRY  # a stage without retries of its own


def test_an_out_of_memory_kill_of_a_labeling_actor_under_the_stage_is_a_lost_worker():
    """A killed pool actor's shard fails inside the stage body, which may wrap it (the Parquet writer does)."""
    try:
        try:
            raise out_of_memory()
        except OutOfMemoryError as exc:
            raise RuntimeError("writing g01/labels failed") from exc
    except RuntimeError as wrapped:
        cause = lost_worker(wrapped)
    assert cause is not None and cause.startswith("OutOfMemoryError: Task was killed")


@pytest.mark.parametrize(
    "error, lost",
    [
        (NodeDiedError("node 6a2c died"), True),
        (RuntimeError("a bug in the stage"), False),
        (MemoryError(), False),  # the stage's own allocation failed, nothing was killed: its own retries decide
    ],
)
def test_only_rays_word_that_a_worker_died_counts(error, lost):
    assert (lost_worker(error) is not None) is lost
