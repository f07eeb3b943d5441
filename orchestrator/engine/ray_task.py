"""A stage as a Ray task: the function Ray runs for it, its name in Ray, and what its failure means.

``RayExecutor`` (the driver) submits ``run_on_ray``; this module is what a Ray worker imports to run
it, so it holds only what runs there (the stage's placement, its progress sink, the warm-up's
imports) and how the driver reads a failed task: a dead worker, actor or node (an out-of-memory kill
among them) is a ``WorkerLostError`` (retried), anything else the stage's own exception with Ray's traceback kept.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.dag import Parallelism, StageProgress
from orchestrator.engine.actor_pool import StageActors
from orchestrator.engine.body import Placement, run_stage_body
from orchestrator.engine.fit import uses_actor_pool
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.task import StageTask
from orchestrator.engine.train_run import fit_stage, this_node
from orchestrator.errors import REMOTE_TRACEBACK, WorkerLostError, body_traceback, exception_chain

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def run_on_ray(task: StageTask, pool: StageActors | None = None) -> Manifest:
    """A Ray task's body: one process, the coordinator of Ray Train workers, or a sharded stage's first worker.

    Data-parallel stages go through Ray Train (this task only coordinates); sharded stages run
    their body here, as their first worker, and hand ``ctx.map_shards`` to this process and
    ``pool``: the run's kept actors and the ones this task starts, ``workers - 1`` in all, with
    the stage's per-worker resources.
    """
    resources = task.stage.resources
    if uses_actor_pool(task.stage) and pool is None:  # before Ray is touched: a wiring error, whatever the cluster
        raise ValueError(f"{task.stage.name}: a sharded stage with {resources.workers} workers needs an actor pool")
    node = this_node()
    if resources.workers <= 1:
        manifest = run_stage_body(task, Placement(node=node))
    elif task.stage.parallelism is Parallelism.DATA:
        return fit_stage(task)
    else:
        assert pool is not None  # checked above
        try:
            with pool.mapper(task.stage.name) as mapper:  # this task is the stage's first worker
                placement = Placement(
                    shard_mapper=mapper,
                    device="cuda" if resources.num_gpus > 0 else "cpu",  # its device and the shard actors'
                    node=node,
                )
                manifest = run_stage_body(task, placement)
        except Exception as exc:  # an actor's node died: say so here, where the whole exception chain is known
            cause = lost_worker(exc)
            if cause is None:
                raise
            raise WorkerLostError(task.stage.name, cause) from exc
    assert manifest is not None  # rank 0 always stores
    return manifest


def task_name(task: StageTask) -> str:
    """A stage attempt's name in Ray (`ray list tasks`, the dashboard): ``g01/train``, ``g01/train (attempt 2)``."""
    return task.stage.name if task.attempt == 1 else f"{task.stage.name} (attempt {task.attempt})"


def with_remote_traceback(error: BaseException, task_error: Any) -> BaseException:
    """``error`` with Ray's traceback of the failed task kept, where it carries no stage body's traceback of its
    own: one the body's frames could not travel with (an exception whose pickling drops its attributes, one
    raised outside the body) still says where it came from. The text is the ``RayTaskError``'s own (the task's
    name, pid and traceback; its ``traceback_str`` is not an attribute of the one ``ray.get`` raises)."""
    remote = ANSI_COLOUR.sub("", str(task_error))  # Ray colours the task's name for a terminal
    if body_traceback(error) is None and remote:
        try:
            setattr(error, REMOTE_TRACEBACK, remote)
        except AttributeError:  # an exception type without attributes of its own
            pass
    return error


def as_lost(stage: str, error: BaseException) -> BaseException:
    """``error`` as a WorkerLostError when it says a worker, actor or node died; else ``error`` itself."""
    if isinstance(error, WorkerLostError):
        return error
    cause = lost_worker(error)
    return error if cause is None else WorkerLostError(stage, cause)


def lost_worker(error: BaseException) -> str | None:
    """What died, when ``error`` or anything in its chain is Ray saying a worker, actor or node died; else None.

    The whole ``__cause__``/``__context__`` chain counts: an actor lost under a streamed output
    reaches the stage wrapped by the Parquet writer.

    An out-of-memory kill counts: when the node runs low on memory, Ray's memory monitor kills a
    worker (the stage's task, or an actor of its pool) and ``ray.get`` raises ``OutOfMemoryError``,
    a plain ``RayError``, for both. The monitor chooses by start time (the newest first), not by
    the memory a worker holds, so the killed stage often fits once the pressure (another trial, a
    stage beside it) is gone: as for a lost node, a retry is worth it, and the retries a lost
    worker gets (``policy.LOST_WORKER_RETRIES``) bound a stage that never fits.
    """
    import ray.exceptions as errors

    kinds = (
        errors.WorkerCrashedError,
        errors.NodeDiedError,
        errors.ObjectLostError,
        errors.OwnerDiedError,
        errors.RayActorError,
        errors.LocalRayletDiedError,
        errors.OutOfMemoryError,
    )
    died = next((e for e in exception_chain(error) if isinstance(e, kinds)), None)
    return None if died is None else f"{type(died).__name__}: {str(died).splitlines()[0] if str(died) else ''}"


@dataclass(frozen=True)
class BoardSink:
    """A ProgressSink that hands updates to the board actor and never waits for it.

    It travels inside the task (an actor handle pickles), so a Ray task (a sharded stage's among
    them) or a Ray Train rank reports from wherever it runs; Ray keeps one caller's calls in order.
    """

    board: Any

    def __call__(self, progress: StageProgress) -> None:
        self.board.update.remote(progress)  # fire and forget: the reference is dropped


def import_modules(modules: tuple[str, ...]) -> int:
    """Import ``modules`` in a Ray worker (the warm-up task); returns the worker's pid."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    return os.getpid()
