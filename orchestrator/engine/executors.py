"""Where stage tasks run: in this process (LocalExecutor) or as Ray tasks (RayExecutor).

The runner only submits ready ``StageTask``s and waits for the first to finish, so
swapping executors changes nothing else (kedro's runner/executor split). Each executor
also decides a task's placement: LocalExecutor runs every stage as one process; RayExecutor
runs it as a Ray task that, for a stage with workers > 1, fans out to Ray Train workers
(``Parallelism.DATA``) or to an actor pool (``Parallelism.SHARDS``). Both return a task's
exception as a value instead of raising it, so the runner's pure retry policy sees the
stage's own exception type.

Starting or joining Ray, and saying why a start failed, is ``ray_session``'s; how a Ctrl-C or a
SIGTERM ends the driver, and its exit codes, are ``signals``'.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.dag import Parallelism, Pipeline, ProgressSink, Resources, Stage, StageProgress
from orchestrator.engine import distributed
from orchestrator.engine.artifacts import Manifest
from orchestrator.engine.body import Placement, run_stage_body
from orchestrator.engine.demands import amounts_text, shortfall
from orchestrator.engine.fit import (
    LostNode,
    live_node_resources,
    live_nodes_by_id,
    lost_nodes,
    most_free_on_one_node,
    uses_actor_pool,
    workers_to_start,
)
from orchestrator.engine.progress import ProgressBoard
from orchestrator.engine.ray_session import init_failure, init_kwargs, init_ray
from orchestrator.engine.task import StageTask
from orchestrator.errors import REMOTE_TRACEBACK, RelayError, WorkerLostError, body_traceback, exception_chain

logger = logging.getLogger(__name__)

WARM_WAIT_S = 120.0  # the longest the first stage waits for the first warm worker
REFIT_EVERY_S = 15.0  # while stages run, how often the driver checks whether the cluster lost a node
WAITING_WARN_S = 60.0  # a stage Ray has not placed after this long is said to wait, and why (once per stage)
# A run whose every stage in flight has waited this long for a place while its kept labeling actors sit idle lets
# them go: other work on the cluster (another run's kept actors) holds the rest, and both could wait for good.
KEPT_YIELD_S = 30.0
BOARD_READ_S = 10.0  # the longest one look at the progress board may take (the display skips it then)
ReadProgress = Callable[[], list[StageProgress]]
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class Executor(Protocol):
    """Runs stage tasks where it places them; wait returns at least one finished (handle, outcome).

    An outcome is the stage's Manifest or the exception it raised (returned, not raised).
    ``warm_up`` lets an executor prepare its workers for a pipeline before the first submit;
    ``open_progress`` gives the run a progress board (tasks submitted afterwards report to it)
    and returns how the driver reads it.
    """

    def warm_up(self, pipeline: Pipeline) -> None: ...

    def open_progress(self, run_id: str) -> ReadProgress: ...

    def submit(self, task: StageTask) -> Any: ...

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, Any]]: ...

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


def run_on_ray(task: StageTask, pool: distributed.StageActors | None = None) -> Manifest:
    """A Ray task's body: one process, the coordinator of Ray Train workers, or a sharded stage's first worker.

    Data-parallel stages go through Ray Train (this task only coordinates); sharded stages run
    their body here, as their first worker, and hand ``ctx.map_shards`` to this process and
    ``pool``: the run's kept actors and the ones this task starts, ``workers - 1`` in all, with
    the stage's per-worker resources.
    """
    resources = task.stage.resources
    if uses_actor_pool(task.stage) and pool is None:  # before Ray is touched: a wiring error, whatever the cluster
        raise ValueError(f"{task.stage.name}: a sharded stage with {resources.workers} workers needs an actor pool")
    node = distributed.this_node()
    if resources.workers <= 1:
        manifest = run_stage_body(task, Placement(node=node))
    elif task.stage.parallelism is Parallelism.DATA:
        return distributed.fit_stage(task)
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


def _short_of(resources: Resources, workers: int, total: Mapping[str, float]) -> dict[str, float]:
    """What ``workers`` of ``resources`` ask for that the cluster (``total``) has less of."""
    asked = {
        "CPU": resources.num_cpus * workers,
        "GPU": resources.num_gpus * workers,
        **{key: amount * workers for key, amount in dict(resources.custom).items()},
    }
    return shortfall(asked, total)


def infeasible_warning(
    stage: Stage,
    total: Mapping[str, float],
    lost: Sequence[LostNode] = (),
    rejoin_address: str | None = None,
) -> str | None:
    """What to warn of a stage the cluster (``total``) is too small for, or None.

    A stage that cannot start waits until an autoscaler adds nodes. Unless the cluster lost nodes
    (``lost``) that had what it lacks: then it names them and says the stage starts once such a node
    rejoins (``lost_nodes_text``). A 1-CPU stage retried after both workers of a 0-CPU-head cluster
    were killed was told to wait for an autoscaler and lower its resources; restarting one worker
    started it. A labeling stage needs only its own task to start (it labels every shard there, and
    its actors add speed where they find room), so one whose workers do not all fit runs anyway: the
    warning said it would wait, then it finished.
    """
    resources = stage.resources
    short = _short_of(resources, workers_to_start(stage), total)
    if short:
        asks = f"{stage.name} asks for {amounts_text(short)} ({workers_to_start(stage)} worker(s)) but the cluster has "
        has = amounts_text({key: total.get(key, 0) for key in short})
        if lost_could_hold(stage, total, lost):
            return f"{asks}{has}, and {lost_nodes_text(asked_amounts(resources), lost, rejoin_address)}"
        return (
            f"{asks}{has}; it will wait until an autoscaler adds nodes that have them. Lower the stage's resources "
            "or add nodes."
        )
    short = _short_of(resources, resources.workers, total)
    if not short:
        return None
    return (
        f"{stage.name}: its {resources.workers} workers ask for {amounts_text(short)} but the cluster has "
        f"{amounts_text({key: total.get(key, 0) for key in short})}; it runs on its own task, which labels the shards "
        "no actor finds room for (fewer at once). Lower its workers to what the cluster holds, or add nodes."
    )


def lost_could_hold(stage: Stage, total: Mapping[str, float], lost: Sequence[LostNode]) -> bool:
    """Whether the nodes the cluster lost would let ``stage`` start again: one of them had all one worker asks,
    and with all of them back the cluster (``total``) would have what its starting workers ask."""
    asked = asked_amounts(stage.resources)
    if not one_could_hold(asked, lost):
        return False
    regained = {key: total.get(key, 0.0) + sum(node.resources.get(key, 0.0) for node in lost) for key in asked}
    return not _short_of(stage.resources, workers_to_start(stage), regained)


def one_could_hold(asked: Mapping[str, float], lost: Sequence[LostNode]) -> bool:
    """Whether one of the ``lost`` nodes had all of ``asked`` (what one worker asks; nothing asked: False)."""
    return bool(asked) and any(not shortfall(asked, node.resources) for node in lost)


def kept_workers(pipeline: Pipeline, total: Mapping[str, float]) -> dict[Resources, int]:
    """How many actors of each labeling pool stay up for the whole run: as many as leave every stage room.

    A sharded stage of k workers runs on its own task and k - 1 actors, so at most k - 1 are kept.

    Why: kept actors hold their CPUs and GPUs between stages. On 3 CPUs, the 2 actors of a
    3-worker labeling stage kept after g00/pseudo_label would leave a 2-CPU g01/train waiting
    forever; keeping one of them leaves train its CPUs, and each later labeling stage starts on
    its own task and that warm actor while the other starts. So a pool keeps the most actors
    (up to its workers - 1, pools in a fixed order)
    with which, in the cluster's ``total`` (``ray.cluster_resources()``), every other stage fits
    beside all kept actors, and every sharded stage's full pool beside the other pools' kept
    ones. Stages running side by side only wait for each other (they finish); a kept actor never
    does, and an actor of a call that waits for a CPU holds no shards back (``map_on_actors``).
    A pipeline with a stage pinned by ``resources.<stage>.custom`` keeps none: a kept actor may
    take the only CPU of the node the pinned stage must run on, which totals cannot show.
    """
    pools = sorted({stage.resources for stage in pipeline.stages if uses_actor_pool(stage)}, key=repr)
    others = [stage.resources for stage in pipeline.stages if not uses_actor_pool(stage)]
    kept = dict.fromkeys(pools, 0)
    if any(stage.resources.custom for stage in pipeline.stages):
        return kept  # pinned stages: totals say nothing of the one node a kept actor could fill (see docstring)

    def fits(pool: Resources, count: int) -> bool:
        trial = {**kept, pool: count}
        demands = [(r, r.workers) for r in others] + [(r, r.workers - trial[r]) for r in pools]
        for key, need in (("CPU", lambda r: r.num_cpus), ("GPU", lambda r: r.num_gpus)):
            held = sum(need(r) * n for r, n in trial.items())
            if held + max((need(r) * n for r, n in demands), default=0.0) > total.get(key, 0.0):
                return False
        return True

    for pool in pools:
        kept[pool] = next((n for n in range(pool.workers - 1, 0, -1) if fits(pool, n)), 0)
    return kept


def kept_message(kept: int, workers: int) -> str:
    """What the run log says about a pool: how many of its ``workers - 1`` actors stay up between stages, and why not all."""
    actors = workers - 1
    if kept == actors:
        return "kept for the run"
    if kept == 0:
        return "one pool per stage call (no room to keep them)"
    return f"{kept} of {actors} kept for the run, the others started per stage call (no room to keep them all)"


def warm_modules(pipeline: Pipeline) -> list[str]:
    """What a worker imports before its first stage: the stage functions' modules and the Ray task's own."""
    return sorted({run_on_ray.__module__, *(stage.fn.__module__ for stage in pipeline.stages)})


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

    def open_progress(self, run_id: str) -> ReadProgress:
        """An in-process board: the stage (on this thread) writes it, the display (another thread) reads it."""
        board = ProgressBoard()
        self._progress = board.update
        return board.snapshot

    def submit(self, task: StageTask) -> LocalHandle:
        """Queue ``task``; its resources are ignored in-process."""
        return LocalHandle(next(self._counter), with_progress(task, self._progress))

    def wait(self, handles: Sequence[LocalHandle]) -> list[tuple[LocalHandle, Any]]:
        """Run the earliest submitted handle; return its manifest or its exception."""
        if not handles:
            raise ValueError("wait() needs at least one handle; got none")
        handle = min(handles, key=lambda h: h.order)
        try:
            outcome: Any = run_as_one_process(handle.task)
        except Exception as exc:  # returned, not raised: the runner's policy decides
            outcome = exc
        return [(handle, outcome)]

    def shutdown(self) -> None:
        """Nothing to release."""


class RayExecutor:
    """Runs each stage as a Ray task named after the stage, with the stage's CPUs, GPUs and custom resources,
    and owns the stages' actor pools.

    Starts its own local Ray instance, or connects to ``address`` (or the cluster in
    RAY_ADDRESS, which a Ray job sets), unless Ray is already initialised. The dashboard
    stays on: with it off, resources freed by stopped Tune trials leaked (Ray 2.x; observed
    with `relay tune`).

    Sharded stages get their actors from here: per stage ``Resources``, as many actors kept
    warm for the run as ``warm_up`` finds room for beside every other stage (``kept_workers``),
    the rest started for one stage call and released when it ends. A stage that fails on kept
    actors releases them, so the retry starts on fresh ones. ``shutdown`` releases them all.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        include_dashboard: bool = True,
        object_store_memory: int | None = None,
    ) -> None:
        import ray

        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            began = time.time()
            try:
                init_ray(ray, init_kwargs(address, num_cpus, include_dashboard, object_store_memory))
            except Exception as exc:  # Ray raises bare Exceptions (a node that timed out starting, a busy port)
                joined = address if address != "local" else None
                raise RelayError(init_failure(joined or os.environ.get("RAY_ADDRESS"), exc, began)) from exc
            self._owns_ray = True
        self._remote = ray.remote(run_on_ray)
        self._warming: list[Any] = []
        self._warm_modules: tuple[str, ...] = ()
        self._warm_later = 0
        self._submitted = False
        self._stage_names: dict[Any, str] = {}  # task ref -> stage name, for WorkerLostError
        self._waiting_since: dict[Any, tuple[float, Resources]] = {}  # task ref -> (submitted, asks)
        self._task_names: dict[Any, str] = {}  # task ref -> its name in Ray (a retry's says its attempt)
        self._said_waiting: set[Any] = set()  # task refs (one per attempt) already said to wait
        self._progress: ProgressSink | None = None
        self._kept: dict[Resources, int] = {}  # actors of each pool kept for the run
        self._pools_to_start: list[tuple[Resources, str]] = []  # (resources, a stage that uses them)
        self._pools: dict[Resources, distributed.ActorPool] = {}  # the kept actors
        self._pool_of: dict[Any, distributed.StageActors] = {}  # in-flight sharded stage -> its actors
        self._pools_started = 0  # pools get numbered names in Ray: a retry's pool never meets its predecessor's
        self._pipeline: Pipeline | None = None  # what the kept actors were sized for ...
        self._sized_for: dict[str, float] = {}  # ... in a cluster of these resources
        self._kept_let_go = False  # set once a stalled run let its kept actors go: it keeps none after that
        self._nodes_seen: dict[str, dict[str, float]] = {}  # node id -> its resources, while it lived
        self._read_nodes()

    def warm_up(self, pipeline: Pipeline) -> None:
        """Warm as many workers as the pipeline's widest layer runs at once, with its stages' modules.

        Also decides how many labeling actors stay up for the run: only here is every stage known.
        Kept actors start beside the first stage, so the first labeling stage finds them started too.
        """
        self.warm(warm_modules(pipeline), max(len(layer) for layer in pipeline.layers()))
        pooled = sorted({s.resources: s.name for s in pipeline.stages if uses_actor_pool(s)}.items(), key=repr)
        self._pipeline, self._sized_for = pipeline, dict(self._ray.cluster_resources())
        self._kept = kept_workers(pipeline, self._sized_for)
        self._pools_to_start = [(resources, stage) for resources, stage in pooled if self._kept[resources]]
        for resources, _ in pooled:
            logger.info("labeling actors: %s", kept_message(self._kept[resources], resources.workers))

    def warm(self, modules: Sequence[str], workers: int) -> None:
        """Have up to ``workers`` Ray workers import ``modules`` before their first stage, one first.

        Why: a stage's first task on a fresh worker otherwise pays the imports of its
        function's module (torch, torchvision: 3-8 s on 2 loaded cores) on the critical path,
        and a second worker (for two stages side by side) pays them again mid-run. Ray reuses
        these warm workers for the stages.

        One worker warms at once; the first ``submit`` waits for it and only then starts
        the others, beside that first stage. Warming all of them together made every import
        share the cores with the others (and with Ray's own start-up), so the first stage,
        which needs one worker, started seconds later; the others are needed only when
        stages run side by side. Capped by the cluster's CPUs; failures are ignored (the
        stage itself will report a broken import). Returns at once.
        """
        slots = min(int(workers), int(self._ray.cluster_resources().get("CPU", 0)))
        if slots < 1 or not modules:
            return
        self._warm_modules, self._warm_later = tuple(modules), slots - 1
        self._warming = [self._warm_one()]

    def open_progress(self, run_id: str) -> ReadProgress:
        """The run's progress board as a small named actor (no CPU): stages send to it, the driver polls it."""
        actor = self._ray.remote(ProgressBoard).options(name=f"relay-progress-{run_id}", num_cpus=0, get_if_exists=True)
        board = actor.remote()
        self._progress = BoardSink(board)
        return functools.partial(_read_board, self._ray, board)

    def _warm_one(self) -> Any:
        remote = self._ray.remote(_import_modules).options(num_cpus=1, max_retries=0, scheduling_strategy="DEFAULT")
        return remote.remote(self._warm_modules)

    def _before_first_submit(self) -> None:
        """Wait for the first warm worker, so the first stage lands on it instead of a cold one."""
        if self._warming:  # bounded: a worker that never imports must not hold the run back
            self._ray.wait(self._warming[:1], num_returns=1, timeout=WARM_WAIT_S)

    def _after_first_submit(self) -> None:
        """Warm the remaining workers, and start kept actor pools, beside the first stage."""
        self._warming.extend(self._warm_one() for _ in range(self._warm_later))
        self._warm_later = 0
        for resources, stage in self._pools_to_start:
            self._kept_pool(resources, stage)
        self._pools_to_start = []

    def _kept_pool(self, resources: Resources, stage: str) -> distributed.ActorPool | None:
        """The actors kept for ``resources`` (started on first use), or None where none are kept."""
        if resources not in self._pools and self._kept.get(resources, 0):
            self._pools[resources] = self._start_pool(resources, stage, self._kept[resources])
        return self._pools.get(resources)

    def _start_pool(self, resources: Resources, stage: str, count: int) -> distributed.ActorPool:
        """``count`` new actors, named in Ray after the kind of stage they serve and a number (``pseudo_label pool 2 worker 0``)."""
        return distributed.ActorPool.start(resources, self._next_pool_label(stage), count)

    def _next_pool_label(self, stage: str) -> str:
        """``pseudo_label pool N``: the kind of stage the actors serve, and a number no earlier pool had."""
        self._pools_started += 1
        return f"{stage.rsplit('/', 1)[-1]} pool {self._pools_started}"

    def _pool(self, resources: Resources, stage: str) -> distributed.StageActors:
        """A stage call's actors: the kept ones, and how many more its task starts (``StageActors``).

        The stage's own task is its first worker, so a call needs ``workers - 1`` actors.
        """
        kept = self._kept_pool(resources, stage) or distributed.ActorPool(resources, ())
        extra = resources.workers - 1 - len(kept.actors)
        return distributed.StageActors(kept, extra, self._next_pool_label(stage) if extra else "")

    def _release(self, ref: Any, failed: bool) -> None:
        """After a sharded stage: its kept actors go only if it failed (the retry starts on fresh ones), or if
        they are no longer kept (``_refit_kept``); the actors its task started, it stopped itself."""
        call = self._pool_of.pop(ref, None)
        if call is None:
            return
        kept = self._pools.get(call.kept.resources)
        if kept is not None and kept.includes(call.kept) and not failed:
            return
        if kept is not None and failed and call.kept.includes(kept):
            del self._pools[call.kept.resources]
        call.kept.shutdown()

    def submit(self, task: StageTask) -> Any:
        """Start ``task`` as a Ray task; Ray's own retries are off, the runner retries.

        A data-parallel stage's task only coordinates (Ray Train's workers hold
        the resources), so it asks for nothing: holding a CPU there would
        starve the workers it waits for (2 CPUs: a stall). A sharded stage's
        task is its first worker and holds one worker's resources; its actors
        only add speed, so it never waits for them (``map_on_actors``).
        """
        resources, total = task.stage.resources, dict(self._ray.cluster_resources())
        self._read_nodes()
        self._refit_kept(total)
        self._warn_if_infeasible(task.stage, total)
        first = not self._submitted
        if first:
            self._before_first_submit()
        self._submitted = True
        pool = self._pool(resources, task.stage.name) if uses_actor_pool(task.stage) else None
        ref = self._remote.options(**self._task_options(task)).remote(with_progress(task, self._progress), pool)
        self._stage_names[ref] = task.stage.name
        self._task_names[ref] = _task_name(task)
        self._waiting_since[ref] = (time.monotonic(), task.stage.resources)
        if pool is not None:
            self._pool_of[ref] = pool
        if first:
            self._after_first_submit()
        return ref

    def _task_options(self, task: StageTask) -> dict[str, Any]:
        """The stage's resources, its name (``g01/train`` in `ray list tasks` and the dashboard), where it goes.

        A Ray Train coordinator (a data-parallel stage with workers > 1) holds nothing; it and a
        sharded stage's task (which holds one worker's resources) run beside this driver where
        there is room: losing a worker node then costs only the workers on it, which Ray Train
        and the runner replace, and never the task that waits for them (nor Ray Train's
        controller, which follows it). Either way the task never joins the caller's placement
        group: a Tune trial's 0.1-CPU bundle cannot hold a stage.
        """
        resources = task.stage.resources
        coordinator = resources.workers > 1 and not uses_actor_pool(task.stage)
        strategy: Any = "DEFAULT"
        if resources.workers > 1:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy = NodeAffinitySchedulingStrategy(self._ray.get_runtime_context().get_node_id(), soft=True)
        return {
            "name": _task_name(task),
            "num_cpus": 0 if coordinator else resources.num_cpus,
            "num_gpus": 0 if coordinator else resources.num_gpus,
            "resources": {} if coordinator else dict(resources.custom),
            "max_retries": 0,
            "scheduling_strategy": strategy,
        }

    def _refit_kept(self, total: dict[str, float]) -> None:
        """A cluster that lost a node keeps only the actors that still leave every stage room.

        Why: the kept actors were sized against the whole cluster; after a node is lost they may
        hold the CPUs a stage (Ray Train's new worker group, a retried stage) now waits for,
        forever. Pools the smaller cluster cannot keep are let go: idle ones at once, one in use
        when its stage ends (``_release`` finds it no longer kept). Their stages then start
        actors per call, as on a small cluster. ``total``: ``ray.cluster_resources()`` now.
        """
        if self._pipeline is None:
            return
        if all(total.get(key, 0.0) >= value for key, value in self._sized_for.items()):
            return  # as large as it was (or larger: kept actors never grow mid-run)
        self._sized_for = total
        self._kept = dict.fromkeys(self._kept, 0) if self._kept_let_go else kept_workers(self._pipeline, total)
        for resources, pool in list(self._pools.items()):
            if len(pool.actors) > self._kept.get(resources, 0):
                del self._pools[resources]
                if not any(call.kept.includes(pool) for call in self._pool_of.values()):  # else: when its call ends
                    pool.shutdown()
                logger.warning(
                    "the cluster shrank to %s CPU / %s GPU: labeling actors now %s",
                    total.get("CPU", 0),
                    total.get("GPU", 0),
                    kept_message(self._kept.get(resources, 0), resources.workers),
                )

    def _warn_if_infeasible(self, stage: Stage, total: Mapping[str, float]) -> None:
        """A request larger than the cluster (``total``) waits forever; say so instead of hanging quietly."""
        warning = self.infeasible_now(stage, total)
        if warning:
            logger.warning(warning)

    def infeasible_now(self, stage: Stage, total: Mapping[str, float]) -> str | None:
        """The submit-time warning (``infeasible_warning``) for ``stage`` in a cluster of ``total``, naming the nodes
        it lost and the address they rejoin with; None where the stage fits.

        The node table is read again only for a stage that does not fit: ``submit`` has read it once already.
        """
        if infeasible_warning(stage, total) is None:
            return None
        return infeasible_warning(stage, total, lost=self._lost_nodes(), rejoin_address=self._head_address())

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, Any]]:
        """Block until one task finishes; return (ref, result or original exception) pairs."""
        if not handles:
            raise ValueError("wait() needs at least one handle; got none")
        ready: list[Any] = []
        while not ready:
            ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=REFIT_EVERY_S)
            if not ready:
                self._refit_kept(dict(self._ray.cluster_resources()))
                self._yield_kept_if_stalled(handles)
                self._say_who_waits(handles)
        finished = [(ref, self._outcome(ref)) for ref in ready]
        for ref, outcome in finished:
            self._release(ref, failed=isinstance(outcome, BaseException))
        return finished

    def _yield_kept_if_stalled(self, handles: Sequence[Any]) -> None:
        """Let the kept actors go when nothing of this run has run for ``KEPT_YIELD_S`` because Ray cannot place it.

        Why: actors are kept against the cluster's total (``kept_workers``), as if the run had the
        cluster to itself. Two runs on one 2-CPU cluster (two users, the seeds of a science protocol
        run side by side), each labeling on 2 actors, each kept one, and each one's next stage waited
        for the CPU the other's actor held: both runs waited for good. A run that holds idle kept
        actors while every one of its stages in flight is unplaced makes no progress at all, so it
        lets them go, and its labeling stages start actors per call for the rest of the run (as
        inside a Tune trial). While a labeling stage runs (its task is placed), the run is
        progressing and keeps them; a labeling stage still waiting for its place finds the kept
        actors gone and labels without them (``map_on_actors`` drops an actor lost before it answers).
        """
        if not self._pools or self._kept_let_go:
            return
        now = time.monotonic()
        waited = [now - self._waiting_since[ref][0] for ref in handles if ref in self._waiting_since]
        if not waited or min(waited) < KEPT_YIELD_S or len(waited) < len(handles):
            return
        names = {self._task_names[ref] for ref in handles if ref in self._task_names}  # as Ray names each attempt
        if not names or not names <= self._unplaced_stages():
            return
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()
        self._kept = dict.fromkeys(self._kept, 0)
        self._kept_let_go = True
        logger.warning(
            "%s waited %d s for a place while this run's kept labeling actors sat idle: other work on the "
            "cluster (another run?) holds the rest. Letting them go; labeling actors now start per stage call.",
            ", ".join(sorted(names)),
            min(waited),
        )

    def _say_who_waits(self, handles: Sequence[Any]) -> None:
        """Warn once about each stage attempt Ray has not placed for WAITING_WARN_S, with what it asks and has.

        A cluster large enough in total can still have no room: after a node loss, a Tune sweep's
        trial drivers (0.1 CPU each) kept the CPU their own stages needed, and the sweep waited
        forever without a word. Whether a task is placed comes from Ray's state API, by the task's
        name in Ray. Once per attempt, not per stage: a stage retried after its node was lost (with
        the custom resource only that node had) waited silently, its first attempt having been
        told already, and its retry's Ray name ("g01/train (attempt 2)") matched no stage name.
        """
        now = time.monotonic()
        overdue = [
            ref
            for ref in handles
            if ref in self._waiting_since
            and now - self._waiting_since[ref][0] >= WAITING_WARN_S
            and ref not in self._said_waiting
        ]
        if not overdue:
            return
        unplaced = self._unplaced_stages()
        for ref in overdue:
            if self._task_names.get(ref) in unplaced:
                self._said_waiting.add(ref)
                logger.warning("%s", self.waiting_now(self._task_names[ref], self._waiting_since[ref][1]))

    def waiting_now(self, name: str, asks: Resources) -> str:
        """The waiting warning (``waiting_message``) for a stage attempt ``name`` asking ``asks``, as the cluster is now:
        what is free in all and per node, each live node's totals, and the nodes it lost."""
        free, total = self._ray.available_resources(), self._ray.cluster_resources()
        per_node, node_totals = self._free_per_node(), self._node_totals()
        return waiting_message(
            name, asks, free, total, per_node, node_totals, lost=self._lost_nodes(), rejoin_address=self._head_address()
        )

    def _read_nodes(self) -> list[dict[str, Any]] | None:
        """``ray.nodes()``, remembering what each live node has: once dead, its entry there says nothing of it.
        None when this Ray cannot say."""
        try:
            nodes = self._ray.nodes()
        except Exception:  # no node table: the messages that use it say less
            return None
        self._nodes_seen = {**getattr(self, "_nodes_seen", {}), **live_nodes_by_id(nodes)}  # (tests skip __init__)
        return nodes

    def _lost_nodes(self) -> list[LostNode]:
        """The nodes the cluster lost whose resources are known (``fit.lost_nodes``); empty when Ray cannot say."""
        nodes = self._read_nodes()
        return [] if nodes is None else lost_nodes(nodes, self._nodes_seen)

    def _head_address(self) -> str | None:
        """The address a lost node rejoins the cluster with (``ray start --address``); None when unknown."""
        try:
            return self._ray.get_runtime_context().gcs_address or None
        except Exception:  # an older runtime context: the message says <head address> instead
            return None

    def _free_per_node(self) -> list[dict[str, float]] | None:
        """What each live node has free now; None when this Ray cannot say (the message then gives the total only)."""
        try:
            return [dict(free) for free in self._ray._private.state.available_resources_per_node().values()]
        except Exception:  # a Ray without the per-node state call: the total is still worth saying
            return None

    def _node_totals(self) -> list[dict[str, float]] | None:
        """What each live node has in all (``ray.nodes()``, as ``fit.live_node_resources`` reads it); None when this
        Ray cannot say: whether some node could ever hold a worker is then left unsaid."""
        nodes = self._read_nodes()
        return None if nodes is None else live_node_resources(nodes)

    def _warn_waiting(
        self,
        name: str,
        asks: Resources,
        free: Mapping[str, float],
        total: Mapping[str, float],
        free_per_node: Sequence[Mapping[str, float]] | None = None,
        node_totals: Sequence[Mapping[str, float]] | None = None,
    ) -> None:
        """The warning for one unplaced stage attempt (``waiting_message``)."""
        logger.warning("%s", waiting_message(name, asks, free, total, free_per_node, node_totals))

    def _unplaced_stages(self) -> set[str]:
        """Names of this job's tasks that Ray has not placed on a node yet; empty when the state API cannot say."""
        try:
            from ray.util.state import list_tasks

            context = self._ray.get_runtime_context()  # its GCS: with other Ray instances on the machine,
            filters = [("job_id", "=", context.get_job_id()), ("state", "=", "PENDING_NODE_ASSIGNMENT")]  # no guess
            found = list_tasks(address=context.gcs_address, filters=filters, limit=1000, raise_on_missing_output=False)
            return {task.name for task in found}
        except Exception:  # no dashboard, an older state API: no warning rather than a failed run
            return set()

    def _outcome(self, ref: Any) -> Any:
        """ray.get, with a task's exception unwrapped to the stage's own exception.

        A dead process, actor or node under the stage (the task's own worker, an actor of
        its pool, Ray Train's workers beyond their restarts) becomes a WorkerLostError, which
        the retry policy retries even for a stage without retries of its own.
        """
        exceptions = self._ray.exceptions
        stage = self._stage_names.pop(ref, "?")
        self._waiting_since.pop(ref, None)
        self._task_names.pop(ref, None)
        self._said_waiting.discard(ref)
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, BaseException) and not isinstance(cause, exceptions.RayTaskError):
                return _as_lost(stage, with_remote_traceback(cause, exc))
            return with_remote_traceback(exc, exc)
        except Exception as exc:
            return _as_lost(stage, exc)

    def shutdown(self) -> None:
        """Release every actor pool, and stop Ray if this executor started it."""
        if self._ray.is_initialized():
            for pool in {id(p): p for p in [*self._pools.values(), *(c.kept for c in self._pool_of.values())]}.values():
                pool.shutdown()
        self._pools.clear()
        self._pool_of.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False


def waiting_message(
    name: str,
    asks: Resources,
    free: Mapping[str, float],
    total: Mapping[str, float],
    free_per_node: Sequence[Mapping[str, float]] | None = None,
    node_totals: Sequence[Mapping[str, float]] | None = None,
    lost: Sequence[LostNode] = (),
    rejoin_address: str | None = None,
) -> str:
    """What one unplaced stage attempt asks, what is free (in all and on one node), and why it waits.

    ``free_per_node`` / ``node_totals``: what each live node has free / in all. A worker never spans
    nodes, so where no node has as much as one worker asks in all, the stage never starts on these
    nodes: it says so and the fix (two 1-CPU nodes were told "the cluster has 1.9 CPU free ... it
    starts when they free it" for a 2-CPU worker, every minute, for ever). Unless a node the cluster
    lost (``lost``) had that much: then it names the lost nodes and says the stage starts once such a
    node rejoins (``rejoin_address``: the head's, for ``ray start``). Both workers of a 0-CPU-head
    cluster killed were told "it never starts on these nodes. Lower the stage's resources"; restarting
    one started it at once. A custom resource no node has any more is said apart: the node that had
    it may come back.
    """
    gone = [key for key, _ in asks.custom if total.get(key, 0.0) <= 0]
    head = (
        f"{name} has waited {WAITING_WARN_S:.0f} s for a place: it asks for {asks.num_cpus:g} CPU and {asks.num_gpus:g} "
        f"GPU a worker{''.join(f' and {amount:g} {key}' for key, amount in asks.custom)}, the cluster has "
        f"{free.get('CPU', 0.0):g} CPU and {free.get('GPU', 0.0):g} GPU free{split_free_note(asks, free, free_per_node)}."
    )
    if gone:
        return (
            f"{head} The cluster has no {', '.join(gone)} at all now (a node that had it was lost?); it waits until a "
            "node with it joins."
        )
    never = never_fits_note(name, asks, node_totals)
    if never:
        return f"{head} {lost_nodes_note(asks, node_totals or (), lost, rejoin_address) or never}"
    return (
        f"{head} Other work holds the rest (Tune trial drivers, kept labeling actors, other jobs); it starts when "
        "they free it. Add nodes, or lower the stage's resources, if it never does."
    )


def asked_amounts(asks: Resources) -> dict[str, float]:
    """What one worker asks of each resource (CPU, GPU, custom), amounts above 0."""
    asked = {"CPU": asks.num_cpus, "GPU": asks.num_gpus, **dict(asks.custom)}
    return {key: float(amount) for key, amount in asked.items() if amount > 0}


def never_fits_note(name: str, asks: Resources, node_totals: Sequence[Mapping[str, float]] | None) -> str:
    """``No node has 2 CPU in all (the largest has 1 CPU) ...: it never starts ...`` where no live node could ever
    hold one worker; empty where one could, or where the nodes are unknown."""
    asked = asked_amounts(asks)
    if not node_totals or not asked or any(not shortfall(asked, node) for node in node_totals):
        return ""
    largest = {key: most_free_on_one_node(node_totals, key) for key in asked}
    role = name.split(" ")[0].rsplit("/", 1)[-1]
    return (
        f"No node has {amounts_text(asked)} in all (the largest has {amounts_text(largest)}): "
        f"it never starts on these nodes. Lower the stage's resources (e.g. resources.{role}.num_cpus; "
        "more workers share the work), or add a node that large (`ray start --num-cpus N --num-gpus N`; an "
        "autoscaling cluster starts one only if it has such a node type)."
    )


def lost_nodes_note(
    asks: Resources, node_totals: Sequence[Mapping[str, float]], lost: Sequence[LostNode], rejoin_address: str | None
) -> str:
    """``No live node has 1 CPU in all ..., but the cluster lost 2 node(s): ...; it starts once such a node rejoins``
    where a lost node had all one worker asks; empty where none had (the stage is larger than any node it had)."""
    asked = asked_amounts(asks)
    if not one_could_hold(asked, lost):
        return ""
    largest = {key: most_free_on_one_node(node_totals, key) for key in asked}
    return (
        f"No live node has {amounts_text(asked)} in all (the largest has {amounts_text(largest)}), but "
        f"{lost_nodes_text(asked, lost, rejoin_address)}"
    )


def lost_nodes_text(asked: Mapping[str, float], lost: Sequence[LostNode], rejoin_address: str | None) -> str:
    """``the cluster lost 2 node(s): <id> at <ip> (1 CPU), ...; ... It starts once such a node rejoins: restart Ray
    on it (`ray start --address=<head>`).``: what the waiting and the submit-time warnings say of lost nodes that
    had what one worker asks (``asked``)."""
    named = ", ".join(
        f"{node.node_id} at {node.address} ({amounts_text({key: node.resources.get(key, 0.0) for key in asked})})"
        for node in lost
    )
    return (
        f"the cluster lost {len(lost)} node(s): {named}; a lost node had {amounts_text(asked)}. It starts once such a "
        f"node rejoins: restart Ray on it (`ray start --address={rejoin_address or '<head address>'}`)."
    )


def split_free_note(
    asks: Resources, free: Mapping[str, float], free_per_node: Sequence[Mapping[str, float]] | None
) -> str:
    """`` in all, at most X CPU on one node; a worker runs on one node`` where no node has a worker's share free and
    the most on one node is less than the cluster's total (several nodes).

    Why: after a node loss a sweep's stages waited with "the cluster has 1.8 CPU free" for a 1-CPU
    worker; the 1.8 was spread over nodes that each had 0.9 (trial drivers held the rest), so the
    total alone read as if the worker should have started. A 2-CPU worker told "1.9 CPU free" on two
    1-CPU nodes read as nearly there, though at most 1 was free on one node.
    """
    if not free_per_node:
        return ""
    asked = {"CPU": asks.num_cpus, "GPU": asks.num_gpus}
    split = [
        key
        for key, amount in asked.items()
        if amount > 0
        and most_free_on_one_node(free_per_node, key) + 1e-9 < amount
        and most_free_on_one_node(free_per_node, key) + 1e-9 < free.get(key, 0.0)
    ]
    if not split:
        return ""
    largest = " and ".join(f"{most_free_on_one_node(free_per_node, key):g} {key}" for key in split)
    return f" in all, at most {largest} on one node; a worker runs on one node"


def _task_name(task: StageTask) -> str:
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


def _as_lost(stage: str, error: BaseException) -> BaseException:
    """``error`` as a WorkerLostError when it says a worker, actor or node died; else ``error`` itself."""
    if isinstance(error, WorkerLostError):
        return error
    cause = lost_worker(error)
    return error if cause is None else WorkerLostError(stage, cause)


def lost_worker(error: BaseException) -> str | None:
    """What died, when ``error`` or anything in its chain is Ray saying a worker, actor or node died; else None.

    The whole ``__cause__``/``__context__`` chain counts: an actor lost under a streamed output
    reaches the stage wrapped by the Parquet writer.
    """
    import ray.exceptions as errors

    kinds = (
        errors.WorkerCrashedError,
        errors.NodeDiedError,
        errors.ObjectLostError,
        errors.OwnerDiedError,
        errors.RayActorError,
        errors.LocalRayletDiedError,
    )
    died = next((e for e in exception_chain(error) if isinstance(e, kinds)), None)
    return None if died is None else f"{type(died).__name__}: {str(died).splitlines()[0] if str(died) else ''}"


def with_progress(task: StageTask, sink: ProgressSink | None) -> StageTask:
    """``task`` reporting to the run's progress board (unchanged when the run has none)."""
    return task if sink is None else dataclasses.replace(task, progress=sink)


@dataclass(frozen=True)
class BoardSink:
    """A ProgressSink that hands updates to the board actor and never waits for it.

    It travels inside the task (an actor handle pickles), so a Ray task (a sharded stage's among
    them) or a Ray Train rank reports from wherever it runs; Ray keeps one caller's calls in order.
    """

    board: Any

    def __call__(self, progress: StageProgress) -> None:
        self.board.update.remote(progress)  # fire and forget: the reference is dropped


def _read_board(ray: Any, board: Any) -> list[StageProgress]:
    return ray.get(board.snapshot.remote(), timeout=BOARD_READ_S)


def _import_modules(modules: tuple[str, ...]) -> int:
    """Import ``modules`` in a Ray worker (the warm-up task); returns the worker's pid."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    return os.getpid()
