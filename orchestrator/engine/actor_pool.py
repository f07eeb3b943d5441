"""Shards on actors: a sharded stage's ``ctx.map_shards`` across its own task and an ``ActorPool``.

A ``Parallelism.SHARDS`` stage (batch inference) runs its body once, in a Ray task that holds one
worker's resources and is itself the first worker; its ``ctx.map_shards(fn, shards)`` calls label
shards there and on an ``ActorPool`` of ``workers - 1`` actors with the same resources: as many as
the cluster has room for the executor keeps warm across the run's stage calls (``kept_actors``),
and the task starts the rest for its call (``StageActors``). Results come back in shard order, so
the output is the same for any number of workers. Data-parallel training runs on Ray Train instead
(``train_run``).

Ray and torch are imported inside functions: the driver imports this module (through the
executor) without paying for either.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.dag import Resources, ShardMapper

logger = logging.getLogger(__name__)

SHARDS_IN_FLIGHT_PER_ACTOR = 2  # queued on an actor, so it never waits between shards
SHARDS_HELD_PER_ACTOR = 6  # in flight or finished ahead of an older shard: the reorder window
KEPT_FUNCTIONS = 4  # stage functions an actor keeps (stage calls that share a pool at once)


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
    def start(cls, resources: Resources, label: str | None = None, count: int | None = None) -> ActorPool:
        """Ask Ray for ``count`` actors (default: the stage's workers) and return at once; they start meanwhile.

        ``label`` names them in Ray (`ray list actors`, the dashboard): ``LABEL worker I``, so it must be
        unique in the Ray job (names are; ``KeptActors`` tags its labels per executor). Without one they
        are ``shards TAG worker I``, TAG random: two pools started so in one job (the labeling benchmark's
        calls, the GPU tests) no longer share a name, which Ray refuses. Like the
        stage tasks, they never join the caller's placement group (``DEFAULT`` scheduling): a Tune
        trial's group of 0.1 CPU captures its children, and a 1-CPU actor cannot fit in it.
        """
        import ray

        worker = ray.remote(_ShardWorker)
        label = label or f"shards {uuid.uuid4().hex[:8]}"
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

    def let_go(self) -> None:
        """Have each actor leave (``_ShardWorker.leave``), freeing its resources: the run lets kept actors go.

        Why not ``shutdown``: a stage call waiting for a place may already hold these actors (they were
        its kept ones when it was submitted). Once placed, it finds them gone, and an actor that left on
        request is told apart from one whose process or node died (``let_go_by_the_run``): killed, it
        read as lost, and the call said so. Returns at once; an idle actor leaves at once, one still
        starting once it has started.
        """
        for actor in self.actors:
            actor.leave.remote()


@dataclass(frozen=True)
class StageActors:
    """The actors a sharded stage's task labels beside: the run's ``kept`` ones, and ``extra`` it starts itself.

    Why the task starts the others, not the executor: the task holds one worker's resources,
    and actors asked for before it was placed could take the CPU it waits for, then wait for
    shards from a task that can never start (2 CPUs, one held by another run: a stall). Asked
    for once the task runs, they can only take what is free; the task stops them when the call
    ends, and Ray stops them with their owner if the task's process dies. ``label`` names them
    (``LABEL worker I``), unique to the executor and numbered by it, so a retry's actors never meet its
    predecessor's, nor one executor's another's in the same Ray job (``KeptActors``).
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

    def leave(self) -> None:
        """End this actor on the run's request (``ActorPool.let_go``): an exit Ray records as intended."""
        import ray

        ray.actor.exit_actor()


def let_go_by_the_run(error: BaseException) -> bool:
    """Whether ``error`` (from a call on a dead actor) says the actor left on request (``_ShardWorker.leave``).

    Only the run asks a labeling actor to leave, so such an actor was let go, not lost. Ray gives
    the cause in words only: its exit type, ``INTENDED_USER_EXIT`` (``ray.kill``, a dead process
    and a dead node each give another).
    """
    return "INTENDED_USER_EXIT" in str(error)


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
    otherwise spends on every stage call. An actor lost before it answers (one starting, one
    Ray's memory monitor killed while it started, or a kept one whose node died) is then dropped
    with a warning and the others (and this process) take its share, as is, with an INFO line
    only, a kept one the run let go while the call waited for a place (``ActorPool.let_go``);
    without ``local`` that fails the stage, as does an actor that dies with shards on it. ``fn`` is put in the
    object store once for the call; the runner's retry policy reruns a failed stage (on a fresh
    pool: see ``RayExecutor``).
    """
    if not actors and not local:
        raise ValueError(f"{stage}: map_on_actors got no actors and local=False; nothing would label the shards")
    call = _ShardCall(fn, shards, actors, stage, local)
    try:
        while True:
            if local and (call.running or call.starting):
                call.settle_ready()
            call.send_to_free_actors()
            if call.next_index in call.finished:
                yield call.finished.pop(call.next_index)
                call.next_index += 1
            elif local and (item := call.take()) is not None:
                call.finished[item[0]] = fn(item[1])
            elif call.running or (call.starting and not call.exhausted):
                call.settle_next()
            else:
                return
    finally:
        call.forget()


class _ShardCall:
    """One ``map_on_actors`` call's state: the actors still starting, free slots, shards in flight and finished.

    Apart from the loop so each step has a name; the loop decides only what to do next.
    """

    def __init__(
        self, fn: Callable[[Any], Any], shards: Iterable[Any], actors: Sequence[Any], stage: str, local: bool
    ) -> None:
        import ray

        self.actors, self.stage, self.local = actors, stage, local
        self.key, self.boxed = uuid.uuid4().hex, [ray.put(fn)] if actors else []
        self.starting = {actor.ready.remote(): actor for actor in actors}
        self.free: deque[Any] = deque()  # one entry per free slot of a started actor
        self.window = SHARDS_HELD_PER_ACTOR * (len(actors) + int(local))
        self.running: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (shard index, actor)
        self.finished: dict[int, Any] = {}
        self.source, self.exhausted, self.next_index = enumerate(shards), False, 0

    def settle(self, ref: Any) -> None:
        """Take one ready ref: an actor that has started gets its slots, a shard's result is kept."""
        import ray

        if ref in self.starting:
            actor = self.starting.pop(ref)
            try:
                ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError) as exc:  # died, or killed for memory
                if not self.local:
                    raise
                if let_go_by_the_run(exc):  # the run's own log says why (``KeptActors``): no loss to report
                    logger.info(
                        "%s: a kept labeling actor was let go by the run before this call took a shard; the others "
                        "take its share",
                        self.stage,
                    )
                    return
                logger.warning(
                    "%s: a labeling actor was lost before it took a shard (its process or node died); the others "
                    "take its share: %s",
                    self.stage,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                return
            self.free.extend([actor] * SHARDS_IN_FLIGHT_PER_ACTOR)
        else:
            index, actor = self.running.pop(ref)
            self.finished[index] = ray.get(ref)
            self.free.append(actor)

    def settle_ready(self) -> None:
        """Settle every ref already ready, without waiting (this process labels between them)."""
        import ray

        pending = [*self.running, *self.starting]
        for ref in ray.wait(pending, num_returns=len(pending), timeout=0)[0]:
            self.settle(ref)

    def settle_next(self) -> None:
        """Wait for the next ref to be ready (a started actor or a shard's result), and settle it."""
        import ray

        (ref,), _ = ray.wait([*self.running, *self.starting], num_returns=1)
        self.settle(ref)

    def take(self) -> tuple[int, Any] | None:
        """The next (index, shard) while the window has room; None when it is full or the source is done."""
        if self.exhausted or len(self.running) + len(self.finished) >= self.window:
            return None
        item = next(self.source, None)
        self.exhausted = item is None
        return item

    def send_to_free_actors(self) -> None:
        """Send the next shards to actors with a free slot while the window has room; each named ``STAGE shard I``."""
        while self.free and (item := self.take()) is not None:
            index, shard = item
            actor = self.free.popleft()
            ref = actor.run.options(name=f"{self.stage} shard {index}").remote(self.key, self.boxed, shard)
            self.running[ref] = (index, actor)

    def forget(self) -> None:
        """Have every actor drop the call's function, queued behind its shards (an actor's calls run in the order sent)."""
        for actor in self.actors:
            actor.forget.remote(self.key)
