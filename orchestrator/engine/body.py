"""Running one stage body where it was placed: load the inputs, call the function, store the outputs.

Every executor ends here, whatever the placement: in the driver's process (LocalExecutor),
in a Ray task, on each Ray Train worker, or as the coordinator of an actor pool. What differs
between them is only the ``Placement`` (rank, device, checkpointer, shard mapper).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from orchestrator.dag import (
    Checkpointer,
    ShardMapper,
    Stage,
    StageContext,
    StageProgress,
    StageResult,
    map_in_order,
    stage_ended,
)
from orchestrator.engine.allocator import tune_malloc
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.checkpoints import StoreCheckpointer
from orchestrator.engine.fingerprint import stage_seed
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.task import StageTask
from orchestrator.errors import BODY_TRACEBACK


@dataclass
class Placement:
    """Where one copy of a stage body runs: its rank, device and how it checkpoints and shards.

    The default is a single process that checkpoints into the stage's scratch
    space and maps shards in a loop; ``orchestrator.engine.actor_pool`` builds the
    Ray Train and actor-pool variants.
    """

    rank: int = 0
    world_size: int = 1
    device: str | None = None
    checkpointer: Checkpointer | None = None
    shard_mapper: ShardMapper = map_in_order
    node: str = ""  # the Ray node id of this process, recorded in the manifest (where the stage ran)


def stage_device(num_gpus: float) -> str:
    """ "cuda" when the stage asked for a GPU and one is visible, else "cpu"."""
    import torch  # not at the top: the driver never imports torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


def run_stage_body(task: StageTask, placement: Placement) -> Manifest | None:
    """Load the inputs, call the stage function, and (on rank 0) store its outputs.

    Inputs are loaded from the store here, not passed as objects, so a
    stage's data never travels through the driver. Every rank gets the same
    seed: data-parallel ranks draw the same global batch and take their slice.
    Returns None on ranks other than 0, which store nothing.

    A single process opens and closes the stage's line on the progress board itself; for
    data-parallel ranks the coordinator does (``train_run.fit_stage``), since a rank that
    fails is restarted within the same attempt.
    """
    import torch  # in the worker only: the driver never imports torch (tests/unit/pipelines/test_driver_imports.py)

    stage = task.stage
    alone = placement.world_size == 1
    if alone:
        announce(task)
    store = ArtifactStore(task.store_uri)
    threads = torch.get_num_threads()
    try:
        inputs = {name: store.load(ref) for name, ref in task.input_refs.items()}
        ctx = _context(task, placement, store)
        torch.set_num_threads(max(1, int(stage.resources.num_cpus)))
        tune_malloc()
        torch.manual_seed(ctx.seed)
        started = time.perf_counter()
        result = _call(stage, ctx, inputs)
        _check_result(stage, result)
        if ctx.rank != 0:
            return None
        manifest = store.write_stage(
            task.fingerprint, stage.name, result, ctx.series, started=started, node=placement.node
        )
    finally:
        stage_ended()
        torch.set_num_threads(threads)
        if alone:
            announce(task, finished=True)
    store.clear_scratch(task.fingerprint)
    return manifest


def _call(stage: Stage, ctx: StageContext, inputs: dict[str, Any]) -> Any:
    """``stage.fn`` on its inputs; an exception it raises leaves with the body's traceback kept (``keep_body_traceback``)."""
    try:
        return stage.fn(ctx, inputs, stage.params)
    except Exception as exc:
        keep_body_traceback(exc)
        raise


def keep_body_traceback(error: BaseException) -> None:
    """Keep the traceback of the stage body's own frames with ``error``, as text, for the runner to show and store.

    Why: the runner saw only the exception's last line (``KeyError: 'pseudo_labels'``), and a plug-in's
    author could not find where it came from: a Ray task's exception crosses to the driver without its
    frames, and a local one's traceback starts in the runner's. Formatted here, where the frames are,
    from the stage function's frame down (this module's frame and Relay's and Ray's above it left out);
    an attribute of the exception pickles with it. An error that already has one keeps it (the body's
    own, from a stage body run inside this one).
    """
    if getattr(error, BODY_TRACEBACK, None) or error.__traceback__ is None:
        return
    below_call = error.__traceback__.tb_next or error.__traceback__  # the stage function's frame and those it called
    try:
        setattr(error, BODY_TRACEBACK, "".join(traceback.format_exception(type(error), error, below_call)))
    except AttributeError:  # an exception type without attributes of its own: its message is all there is
        pass


def announce(task: StageTask, finished: bool = False) -> None:
    """Open (or close, ``finished``) the stage attempt's line on the run's progress board, if it has one."""
    if task.progress is not None:
        task.progress(StageProgress(task.stage.name, task.attempt, finished=finished))


def _context(task: StageTask, placement: Placement, store: ArtifactStore) -> StageContext:
    """The StageContext of this copy of the body: the task's identity plus the placement's rank and device."""
    stage = task.stage
    return StageContext(
        run_id=task.run_id,
        stage=stage.name,
        generation=stage.generation,
        seed=stage_seed(task.seed, stage.name),
        device=placement.device or stage_device(stage.resources.num_gpus),
        attempt=task.attempt,
        rank=placement.rank,
        world_size=placement.world_size,
        checkpointer=placement.checkpointer or StoreCheckpointer(store, task.fingerprint),
        shard_mapper=placement.shard_mapper,
        progress_sink=task.progress,
    )


def _check_result(stage: Stage, result: Any) -> None:
    """A stage must return a StageResult with exactly its declared outputs."""
    if not isinstance(result, StageResult):
        raise TypeError(f"stage {stage.name!r} returned {type(result).__name__}; expected StageResult(outputs=...)")
    got, expected = set(result.outputs), set(stage.outputs)
    if got != expected:
        raise ValueError(
            f"stage {stage.name!r} returned outputs {sorted(got)}; expected {sorted(expected)}; "
            "return exactly the outputs the stage declares"
        )
