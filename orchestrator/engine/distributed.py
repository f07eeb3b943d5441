"""Stages that use more than one worker: data-parallel training on Ray Train, shards on actors.

A data-parallel stage with ``workers`` > 1 is coordinated by one Ray task that
holds no CPU or GPU (see ``RayExecutor.submit``); the workers hold them. Which of the
two a stage gets is decided by the executor (``executors.run_on_ray``).

- ``Parallelism.DATA`` (training): ``fit_stage`` runs the stage body on every
  worker of a ``TorchTrainer``. Ray Train sets up the process group (gloo on
  CPU, NCCL on GPU); every rank draws the same global batch and takes its
  slice, DDP all-reduces the gradients, and rank 0 stores the outputs. The
  Train run is named from the stage's fingerprint under the artifact store,
  so running the stage again (a retry, ``relay resume``) resumes it from its
  last in-stage checkpoint instead of step 0.
- ``Parallelism.SHARDS`` (batch inference): the body runs once, in a task that
  holds one worker's resources and is itself the first worker; its
  ``ctx.map_shards(fn, shards)`` calls label shards there and on an
  ``ActorPool`` of ``workers - 1`` actors with the same resources: as many as
  the cluster has room for the executor keeps warm across the run's stage
  calls, and the task starts the rest for its call; results come back in shard
  order, so the output is the same for any number of workers.

Ray and torch are imported inside functions: the driver imports this module (through the
executors) without paying for either.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestrator.dag import Resources, ShardMapper
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore, Manifest, join_uri, train_run_name
from orchestrator.engine.body import Placement, announce, run_stage_body
from orchestrator.engine.filesystems import filesystem_from_uri
from orchestrator.engine.task import StageTask
from orchestrator.errors import body_traceback

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"
KEEP_CHECKPOINTS = 2
WORKER_RESTARTS = 2  # Ray Train restarts of the worker group (a killed worker) before the stage fails
SHARDS_IN_FLIGHT_PER_ACTOR = 2  # queued on an actor, so it never waits between shards
SHARDS_HELD_PER_ACTOR = 6  # in flight or finished ahead of an older shard: the reorder window
KEPT_FUNCTIONS = 4  # stage functions an actor keeps (stage calls that share a pool at once)


# --------------------------------------------------------------------------- Ray Train


def this_node() -> str:
    """The Ray node id of this process: a manifest records where its stage ran."""
    import ray

    return ray.get_runtime_context().get_node_id()


def train_storage_path(store_uri: str) -> str:
    """Ray Train's storage inside the artifact store, so every node sees the same checkpoints."""
    return join_uri(store_uri, TRAIN_DIR)


def train_storage(store_uri: str) -> tuple[str, pafs.FileSystem | None]:
    """``RunConfig``'s ``storage_path`` and ``storage_filesystem`` for a store: an S3 store's with Relay's timeouts.

    Ray opens a filesystem of its own for a URI, with S3's timeouts unset, so a data-parallel stage's
    checkpoint to a store that stopped answering waited until it answered again, while every other write
    of the run gives up within ``orchestrator.engine.filesystems``' bound. Ray pickles the filesystem to
    its workers and the pickle keeps the timeouts. Other stores are left to Ray, as before.
    """
    storage = train_storage_path(store_uri)
    if not storage.startswith("s3://"):
        return storage, None
    filesystem, path = filesystem_from_uri(storage)
    return path, filesystem


def fit_stage(task: StageTask) -> Manifest:
    """Run a stage on ``workers`` Ray Train workers and return the manifest rank 0 wrote.

    A worker that dies restarts the group from the last checkpoint
    (``FailureConfig``); a failure beyond that raises, and the runner's
    retry policy decides. The Train run's files are removed once the
    stage's outputs are stored: they are only needed to resume.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, WorkerGroupError
    from ray.train.torch import TorchTrainer

    stage, resources = task.stage, task.stage.resources
    name, storage = train_run_name(task.fingerprint, stage.name), train_storage_path(task.store_uri)
    storage_path, storage_filesystem = train_storage(task.store_uri)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"task": task},  # Ray Train wants a dict here; the task is its one entry
        scaling_config=ScalingConfig(
            num_workers=resources.workers, use_gpu=resources.num_gpus > 0, resources_per_worker=_per_worker(resources)
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=max(WORKER_RESTARTS, stage.retries)),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        ),
    )
    logger.info(
        "%s: Ray Train run %s with %d workers (%s CPU, %s GPU each) under %s",
        stage.name,
        name,
        resources.workers,
        resources.num_cpus,
        resources.num_gpus,
        storage,
    )
    announce(task)  # the coordinator opens and closes the line: a restarted group stays in one attempt
    try:
        trainer.fit()
    except WorkerGroupError as exc:
        body_error = first_body_error(exc)
        if body_error is None:
            raise
        raise body_error from None
    finally:
        announce(task, finished=True)
    manifest = ArtifactStore(task.store_uri).read_manifest(task.fingerprint)
    if manifest is None:
        raise RuntimeError(
            f"{stage.name}: Ray Train run {name} finished but rank 0 stored no outputs; "
            f"see the worker logs under {storage}/{name}"
        )
    _remove_run(storage, name)
    return manifest


def first_body_error(error: Any) -> BaseException | None:
    """The lowest failing rank's own exception from a Ray Train ``WorkerGroupError``, when every failing rank's
    came from the stage body (it carries the body's traceback); else None, and Ray's error stands.

    Why: Ray's error names every rank's traceback in one message, cut to 1,000 characters mid-traceback,
    so a data-parallel stage said ``WorkerGroupError: Training failed due to worker errors`` where one
    worker says ``FloatingPointError: loss is nan``, and the kept traceback had none of the body's frames.
    A rank that died (its process or node) or failed outside the body has no body traceback: that
    failure stays Ray's error, as before (Ray Train has already restarted the group ``max_failures`` times).
    """
    failures = getattr(error, "worker_failures", None) or {}
    ranked = [failures[rank] for rank in sorted(failures)]
    if not ranked or not all(isinstance(f, BaseException) and body_traceback(f) for f in ranked):
        return None
    return ranked[0]


def _per_worker(resources: Resources) -> dict[str, float]:
    per_worker = {"CPU": resources.num_cpus, **dict(resources.custom)}
    if resources.num_gpus > 0:
        per_worker["GPU"] = resources.num_gpus
    return per_worker


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the stage body as rank ``r`` of ``world_size``."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank = context.get_world_rank()
    placement = Placement(
        rank=rank,
        world_size=context.get_world_size(),
        device=str(ray.train.torch.get_device()),
        checkpointer=TrainCheckpointer(rank),
        node=this_node(),
    )
    run_stage_body(config["task"], placement)


@dataclass
class TrainCheckpointer:
    """In-stage checkpoints through Ray Train: rank 0's state is reported, every rank loads it.

    ``ray.train.report`` is collective, so every rank calls ``save`` at the
    same step; only rank 0 attaches the checkpoint.
    """

    rank: int

    def save(self, state: dict[str, Any], step: int) -> None:
        import ray.train
        import torch

        with tempfile.TemporaryDirectory(prefix="relay-ckpt-") as directory:
            checkpoint = None
            if self.rank == 0:
                torch.save(state, Path(directory) / CHECKPOINT_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report({"step": step}, checkpoint=checkpoint)

    def load(self) -> dict[str, Any] | None:
        import ray.train
        import torch

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def save_part(self, index: int, data: bytes) -> None:
        """Keeps nothing: a data-parallel stage resumes from its state (``save``); parts are for labeling stages."""

    def load_part(self, index: int) -> bytes | None:
        return None


def _remove_run(storage: str, name: str) -> None:
    """Delete a finished Train run's checkpoints; failing to is only worth a warning."""
    try:
        if "://" in storage:
            fs, root = filesystem_from_uri(storage)
        else:
            fs, root = pafs.LocalFileSystem(), storage
        fs.delete_dir(f"{root.rstrip('/')}/{name}")
    except (FileNotFoundError, OSError) as exc:
        logger.warning("could not remove the finished Ray Train run %s under %s: %s", name, storage, exc)


# --------------------------------------------------------------------------- actor pool


@dataclass(frozen=True)
class ActorPool:
    """Shard actors with a stage's per-worker resources, reused across stage calls.

    The executor starts and owns the kept pools (``RayExecutor``): the actors the cluster has
    room to keep beside every other stage live for the run; the rest live for one stage call,
    started by its task (``StageActors``), and a call runs on both (``joined``) and on the
    stage's own task, the first of its workers (so a stage of k workers needs k - 1 actors).
    That task gets the kept pool as an argument, so a second
    labeling stage (the next generation) finds the kept actors started, torch imported and the
    dataset cached: starting two actors cost 3.1 s of every stage call on 2 cores when each call
    started its own.
    The stage's function (the model) is shipped once per stage call, not once per actor start;
    see ``map_on_actors``.
    """

    resources: Resources
    actors: tuple[Any, ...]

    @classmethod
    def start(cls, resources: Resources, label: str = "shards", count: int | None = None) -> ActorPool:
        """Ask Ray for ``count`` actors (default: the stage's workers) and return at once; they start meanwhile.

        ``label`` names them in Ray (`ray list actors`, the dashboard): ``LABEL worker I``. Like the
        stage tasks, they never join the caller's placement group (``DEFAULT`` scheduling): a Tune
        trial's group of 0.1 CPU captures its children, and a 1-CPU actor cannot fit in it.
        """
        import ray

        worker = ray.remote(_ShardWorker)
        options = {
            "num_cpus": resources.num_cpus,
            "num_gpus": resources.num_gpus,
            "resources": dict(resources.custom),
            "scheduling_strategy": "DEFAULT",
        }
        actors = tuple(
            worker.options(**options, name=f"{label} worker {i}").remote(resources.num_cpus)
            for i in range(resources.workers if count is None else count)
        )
        return cls(resources, actors)

    def joined(self, other: ActorPool) -> ActorPool:
        """One pool of both pools' actors, this one's first (a call's kept actors, then those started for it)."""
        return ActorPool(self.resources, self.actors + other.actors)

    def includes(self, other: ActorPool) -> bool:
        """Whether every actor of ``other`` is one of this pool's (Ray's handles compare by actor id)."""
        return set(other.actors) <= set(self.actors)

    def mapper(self, stage: str = "shards", local: bool = False) -> ShardMapper:
        """A ``ctx.map_shards`` implementation on this pool's actors (and the calling process, with ``local``).

        Each call is named ``STAGE shard I`` in Ray; see ``map_on_actors``.
        """
        return functools.partial(map_on_actors, actors=self.actors, stage=stage, local=local)

    def shutdown(self, keep: Sequence[Any] = ()) -> None:
        """Kill the actors, except those in ``keep`` (their resources go back to the cluster)."""
        import ray

        for actor in self.actors:
            if actor not in keep:
                ray.kill(actor)


@dataclass(frozen=True)
class StageActors:
    """The actors a sharded stage's task labels beside: the run's ``kept`` ones, and ``extra`` it starts itself.

    Why the task starts the others, not the executor: the task holds one worker's resources,
    and actors asked for before it was placed could take the CPU it waits for, then wait for
    shards from a task that can never start (2 CPUs, one held by another run: a stall). Asked
    for once the task runs, they can only take what is free; the task stops them when the call
    ends, and Ray stops them with their owner if the task's process dies. ``label`` names them
    (``LABEL worker I``), numbered by the executor so a retry's actors never meet its predecessor's.
    """

    kept: ActorPool
    extra: int
    label: str

    @contextlib.contextmanager
    def mapper(self, stage: str) -> Iterator[ShardMapper]:
        """``ctx.map_shards`` on this process, the kept actors and ``extra`` started now, stopped on exit."""
        started = ActorPool.start(self.kept.resources, self.label, self.extra)
        try:
            yield self.kept.joined(started).mapper(stage, local=True)
        finally:
            started.shutdown()


class _ShardWorker:
    """An actor that applies a stage's function to shard after shard, for as many stage calls as it lives.

    Functions are kept by call key, fetched from the object store on a call's first shard: the
    model in a labeling function travels once per actor per stage call, and a function that
    loads state on its first shard (``ShardLabeler``) does so once per actor per call. The last
    ``KEPT_FUNCTIONS`` are kept, so a stage task that died before ``forget`` leaks nothing.
    """

    def __init__(self, num_cpus: float) -> None:
        import torch

        from orchestrator.engine.allocator import tune_malloc

        torch.set_num_threads(max(1, int(num_cpus)))
        tune_malloc()
        self._functions: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()

    def ready(self) -> bool:
        """Answers once the actor has started (and run every call sent before): ``map_on_actors`` waits on it."""
        return True

    def run(self, key: str, boxed: list[Any], shard: Any) -> Any:
        """``fn(shard)``; ``boxed`` holds the function's ObjectRef, in a list so Ray passes the ref, not its value."""
        fn = self._functions.get(key)
        if fn is None:
            import ray

            fn = self._functions[key] = ray.get(boxed[0])
            while len(self._functions) > KEPT_FUNCTIONS:
                self._functions.popitem(last=False)
        return fn(shard)

    def forget(self, key: str) -> None:
        """Drop a finished call's function (and the model it holds)."""
        self._functions.pop(key, None)


def map_on_actors(
    fn: Callable[[Any], Any],
    shards: Iterable[Any],
    actors: Sequence[Any],
    stage: str = "shards",
    local: bool = False,
) -> Iterator[Any]:
    """``fn(shard)`` on ``actors`` (and in this process too, with ``local``); results yielded in shard order.

    Each shard goes to an actor with a free slot (``SHARDS_IN_FLIGHT_PER_ACTOR``
    each), so an actor that finishes early takes the next shard instead of
    waiting for a slower one: with a fixed round-robin, an actor whose shards
    were done sat idle until the consumer had taken the other actor's older
    shard (about 2 s of each actor's 20 s, measured at 200k rows). Results that
    finish ahead of an older shard wait, at most ``SHARDS_HELD_PER_ACTOR`` per
    worker counting those in flight, so neither the object store nor the
    consumer holds more than a few shards' results. An actor gets shards only
    once it has started (``ready``): a call on kept actors and newly started
    ones begins on the kept ones at once, and an actor still starting, or
    waiting for a CPU that a stage beside this one holds, holds no shards back.

    ``local``: this process is one of the workers (a labeling stage's task holds one worker's
    resources). It labels a shard whenever no result is due and the window has room, so the
    stage starts at once on a process that has torch imported and needs one actor fewer:
    each started actor costs about 2 s of a core (Python, Ray, torch) that a 2-core node
    otherwise spends on every stage call. An actor lost before it answers (one starting,
    or a kept one whose node died) is then dropped with a warning and the others (and this process) take its share; without ``local``
    that fails the stage, as does an actor that dies with shards on it. ``fn`` is put in the
    object store once for the call; the runner's retry policy reruns a failed stage (on a fresh
    pool: see ``RayExecutor``).
    """
    import ray

    if not actors and not local:
        raise ValueError(f"{stage}: map_on_actors got no actors and local=False; nothing would label the shards")
    key, boxed = uuid.uuid4().hex, [ray.put(fn)] if actors else []
    starting = {actor.ready.remote(): actor for actor in actors}
    free: deque[Any] = deque()  # one entry per free slot of a started actor
    window = SHARDS_HELD_PER_ACTOR * (len(actors) + int(local))
    running: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (shard index, actor)
    finished: dict[int, Any] = {}
    source, exhausted, next_index = enumerate(shards), False, 0

    def settle(ref: Any) -> None:
        """Take one ready ref: an actor that has started gets its slots, a shard's result is kept."""
        if ref in starting:
            actor = starting.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                if not local:
                    raise
                logger.warning(
                    "%s: a labeling actor was lost before it took a shard (its process or node died); the others "
                    "take its share: %s",
                    stage,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                return
            free.extend([actor] * SHARDS_IN_FLIGHT_PER_ACTOR)
        else:
            index, actor = running.pop(ref)
            finished[index] = ray.get(ref)
            free.append(actor)

    def take() -> tuple[int, Any] | None:
        """The next (index, shard) while the window has room; None when it is full or the source is done."""
        nonlocal exhausted
        if exhausted or len(running) + len(finished) >= window:
            return None
        item = next(source, None)
        exhausted = item is None
        return item

    try:
        while True:
            if local and (running or starting):
                for ref in ray.wait([*running, *starting], num_returns=len(running) + len(starting), timeout=0)[0]:
                    settle(ref)
            while free and (item := take()) is not None:
                index, shard = item
                actor = free.popleft()
                ref = actor.run.options(name=f"{stage} shard {index}").remote(key, boxed, shard)
                running[ref] = (index, actor)
            if next_index in finished:
                yield finished.pop(next_index)
                next_index += 1
            elif local and (item := take()) is not None:
                finished[item[0]] = fn(item[1])
            elif running or (starting and not exhausted):
                (ref,), _ = ray.wait([*running, *starting], num_returns=1)
                settle(ref)
            else:
                return
    finally:
        for actor in actors:  # queued behind this call's shards: an actor's calls run in the order sent
            actor.forget.remote(key)
