"""Where stage tasks run: the Executor the runner drives, and LocalExecutor, which runs them in this process.

The runner only submits ready ``StageTask``s and waits for the first to finish, so
swapping executors changes nothing else (kedro's runner/executor split). Each executor
also decides a task's placement: LocalExecutor runs every stage as one process; RayExecutor
(``ray_executor``) runs it as a Ray task that, for a stage with workers > 1, fans out to Ray
Train workers (``Parallelism.DATA``) or to an actor pool (``Parallelism.SHARDS``). Both return a
task's exception as a value instead of raising it, so the runner's pure retry policy sees the
stage's own exception type. This module imports no Ray: a local run never pays for it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.dag import Pipeline, ProgressSink, Stage, StageProgress
from orchestrator.engine.body import Placement, run_stage_body, stage_device
from orchestrator.engine.fingerprint import numerics
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.progress import ProgressBoard
from orchestrator.engine.task import StageTask

logger = logging.getLogger(__name__)

ReadProgress = Callable[[], list[StageProgress]]


class Executor(Protocol):
    """Runs stage tasks where it places them; wait returns at least one finished (handle, outcome), or
    none when ``timeout_s`` passed first (the runner looks again at stages another run is computing).

    An outcome is the stage's Manifest or the exception it raised (returned, not raised).
    ``pause`` waits while the run has nothing in flight and waits for a stage another run computes.
    ``warm_up`` lets an executor prepare its workers for a pipeline before the first submit;
    ``open_progress`` gives the run a progress board (tasks submitted afterwards report to it)
    and returns how the driver reads it.
    """

    def warm_up(self, pipeline: Pipeline) -> None: ...

    def numerics(self, stage: Stage) -> dict[str, Any]: ...

    def open_progress(self, run_id: str) -> ReadProgress: ...

    def submit(self, task: StageTask) -> Any: ...

    def wait(self, handles: Sequence[Any], timeout_s: float | None = None) -> list[tuple[Any, Any]]: ...

    def pause(self, seconds: float) -> None: ...

    def shutdown(self) -> None: ...


def run_as_one_process(task: StageTask) -> Manifest:
    """The stage body as rank 0 of 1, here; a stage asking for more workers is told it gets one."""
    stage = task.stage
    if stage.resources.workers > 1:
        logger.info(
            "%s asks for %d workers; the local backend runs it as one process", stage.name, stage.resources.workers
        )
    manifest = run_stage_body(task, Placement())
    assert manifest is not None  # rank 0 always stores
    return manifest


@dataclass(frozen=True, eq=False)
class LocalHandle:
    """A deferred in-process task; ``order`` keeps execution in submission order.

    Compared by identity (eq=False) so handles can key a dict even though a
    task (a Stage with a params dict) is unhashable.
    """

    order: int
    task: StageTask


class LocalExecutor:
    """Runs tasks one at a time in this process, in submission order.

    For unit tests and debugging: deterministic, no cluster, breakpoints work.
    Tasks are deferred to ``wait`` so the runner's dispatch loop behaves as
    it does with a real cluster.
    """

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._progress: ProgressSink | None = None

    def warm_up(self, pipeline: Pipeline) -> None:
        """Nothing to warm: the stages run in this process."""

    def numerics(self, stage: Stage) -> dict[str, Any]:
        """The numerics a stage gets here (part of its fingerprint): one rank, and a GPU only where one is visible.

        Why not the ones its resources ask for: a data-parallel stage of N workers ran here as one
        process and was stored under the fingerprint of N ranks, so a run on Ray took the
        one-process result for its own as a cache hit (and one asking for a GPU on a machine
        without one trained on the CPU, stored as trained on cuda).
        """
        asked = numerics(stage)
        cuda = stage.resources.num_gpus > 0 and stage_device(stage.resources.num_gpus) == "cuda"
        return {**asked, "cuda": cuda, "ranks": 1}

    def open_progress(self, run_id: str) -> ReadProgress:
        """An in-process board: the stage (on this thread) writes it, the display (another thread) reads it."""
        board = ProgressBoard()
        self._progress = board.update
        return board.snapshot

    def submit(self, task: StageTask) -> LocalHandle:
        """Queue ``task``; its resources are ignored in-process."""
        return LocalHandle(next(self._counter), with_progress(task, self._progress))

    def wait(self, handles: Sequence[LocalHandle], timeout_s: float | None = None) -> list[tuple[LocalHandle, Any]]:
        """Run the earliest submitted handle; return its manifest or its exception.

        ``timeout_s`` is not waited out: a stage runs here to its end, on this thread.
        """
        if not handles:
            raise ValueError("wait() needs at least one handle; got none")
        handle = min(handles, key=lambda h: h.order)
        try:
            outcome: Any = run_as_one_process(handle.task)
        except Exception as exc:  # returned, not raised: the runner's policy decides
            outcome = exc
        return [(handle, outcome)]

    def pause(self, seconds: float) -> None:
        """Sleep: nothing runs here while the run waits for another run's stage."""
        time.sleep(seconds)

    def shutdown(self) -> None:
        """Nothing to release."""


def with_progress(task: StageTask, sink: ProgressSink | None) -> StageTask:
    """``task`` reporting to the run's progress board (unchanged when the run has none)."""
    return task if sink is None else dataclasses.replace(task, progress=sink)
