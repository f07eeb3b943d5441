"""Where stage tasks run: in this process (LocalExecutor) or as Ray tasks (RayExecutor).

The runner only submits ready ``StageTask``s and waits for the first to finish, so
swapping executors changes nothing else (kedro's runner/executor split). Each executor
also decides a task's placement: LocalExecutor runs every stage as one process; RayExecutor
runs it as a Ray task that, for a stage with workers > 1, fans out to Ray Train workers
(``Parallelism.DATA``) or to an actor pool (``Parallelism.SHARDS``). Both return a task's
exception as a value instead of raising it, so the runner's pure retry policy sees the
stage's own exception type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.dag import Parallelism, Pipeline, ProgressSink, Resources, Stage, StageProgress
from orchestrator.engine import distributed, port_lock
from orchestrator.engine.artifacts import Manifest
from orchestrator.engine.body import Placement, run_stage_body
from orchestrator.engine.fit import uses_actor_pool, workers_to_start
from orchestrator.engine.progress import ProgressBoard
from orchestrator.engine.ray_start_log import filtered, start_lines
from orchestrator.engine.task import StageTask
from orchestrator.errors import RelayError, WorkerLostError, exception_chain

logger = logging.getLogger(__name__)

DASHBOARD_PORT = 8265
WARM_WAIT_S = 120.0  # the longest the first stage waits for the first warm worker
REFIT_EVERY_S = 15.0  # while stages run, how often the driver checks whether the cluster lost a node
WAITING_WARN_S = 60.0  # a stage Ray has not placed after this long is said to wait, and why (once per stage)
# A run whose every stage in flight has waited this long for a place while its kept labeling actors sit idle lets
# them go: other work on the cluster (another run's kept actors) holds the rest, and both could wait for good.
KEPT_YIELD_S = 30.0
JOIN_SIGNAL_GRACE_S = 3.0  # a join stuck in Ray's C++ client this long after a Ctrl-C or SIGTERM is abandoned
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as the CLI ends an interrupted command
SERVICES_LOGGER = "ray._private.services"  # Ray's logger for starting its processes (dashboard, GCS, raylet)
EXIT_TERMINATED = 143  # 128 + SIGTERM: what timeout, systemd and batch schedulers expect of a program they stopped
BOARD_READ_S = 10.0  # the longest one look at the progress board may take (the display skips it then)
ReadProgress = Callable[[], list[StageProgress]]


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
    return {key: amount for key, amount in asked.items() if amount > total.get(key, 0)}


def infeasible_warning(stage: Stage, total: Mapping[str, float]) -> str | None:
    """What to warn of a stage the cluster (``total``) is too small for, or None.

    A stage that cannot start waits until an autoscaler adds nodes. A labeling stage needs only its
    own task to start (it labels every shard there, and its actors add speed where they find room),
    so one whose workers do not all fit runs anyway: the warning said it would wait, then it finished.
    """
    resources = stage.resources
    short = _short_of(resources, workers_to_start(stage), total)
    if short:
        return (
            f"{stage.name} asks for {_amounts(short)} ({workers_to_start(stage)} worker(s)) but the cluster has "
            f"{_amounts({key: total.get(key, 0) for key in short})}; it will wait until an autoscaler adds nodes "
            "that have them. Lower the stage's resources or add nodes."
        )
    short = _short_of(resources, resources.workers, total)
    if not short:
        return None
    return (
        f"{stage.name}: its {resources.workers} workers ask for {_amounts(short)} but the cluster has "
        f"{_amounts({key: total.get(key, 0) for key in short})}; it runs on its own task, which labels the shards "
        "no actor finds room for (fewer at once). Lower its workers to what the cluster holds, or add nodes."
    )


def _amounts(amounts: Mapping[str, float]) -> str:
    return ", ".join(f"{amount:g} {key}" for key, amount in amounts.items())


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
                _init_ray(ray, _init_kwargs(address, num_cpus, include_dashboard, object_store_memory))
            except Exception as exc:  # Ray raises bare Exceptions (a node that timed out starting, a busy port)
                joined = address if address != "local" else None
                raise RelayError(_init_failure(joined or os.environ.get("RAY_ADDRESS"), exc, began)) from exc
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
        warning = infeasible_warning(stage, total)
        if warning:
            logger.warning(warning)

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
        free, total = self._ray.available_resources(), self._ray.cluster_resources()
        for ref in overdue:
            if self._task_names.get(ref) in unplaced:
                self._said_waiting.add(ref)
                self._warn_waiting(self._task_names[ref], self._waiting_since[ref][1], free, total)

    def _warn_waiting(self, name: str, asks: Resources, free: Mapping[str, float], total: Mapping[str, float]) -> None:
        """The warning for one unplaced stage attempt: what it asks, what is free, and a custom resource gone."""
        gone = [key for key, _ in asks.custom if total.get(key, 0.0) <= 0]
        missing = (
            f" The cluster has no {', '.join(gone)} at all now (a node that had it was lost?); it waits until a node "
            "with it joins."
            if gone
            else ""
        )
        logger.warning(
            "%s has waited %d s for a place: it asks for %g CPU and %g GPU a worker%s, the cluster has %g CPU and "
            "%g GPU free.%s Other work holds the rest (Tune trial drivers, kept labeling actors, other jobs); it "
            "starts when they free it. Add nodes, or lower the stage's resources, if it never does.",
            name,
            WAITING_WARN_S,
            asks.num_cpus,
            asks.num_gpus,
            "".join(f" and {amount:g} {key}" for key, amount in asks.custom),
            free.get("CPU", 0.0),
            free.get("GPU", 0.0),
            missing,
        )

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
                return _as_lost(stage, cause)
            return exc
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


def _task_name(task: StageTask) -> str:
    """A stage attempt's name in Ray (`ray list tasks`, the dashboard): ``g01/train``, ``g01/train (attempt 2)``."""
    return task.stage.name if task.attempt == 1 else f"{task.stage.name} (attempt {task.attempt})"


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


def _init_failure(address: str | None, exc: Exception, began: float | None = None) -> str:
    """What to check when ray.init fails: a local start (``local_start_failure``) or joining a cluster (address, token).

    A cluster with token auth refuses a driver without its token in the same words as one that is
    down ("Failed to connect to GCS"), so the token is named whenever a cluster was joined.
    """
    if address is None:
        return local_start_failure(exc, None if began is None else session_logs(began))
    return (
        f"could not join the Ray cluster at {address}: {exc}; check the address (--address, run.ray_address or "
        "RAY_ADDRESS) and, on a cluster with token auth, that RAY_AUTH_TOKEN or ~/.ray/auth_token holds the "
        "token of its head node"
    )


def local_start_failure(exc: Exception, logs: Path | None) -> str:
    """Why a local Ray instance did not start, and what to do: the cause its logs name (``start_failure_cause``),
    else Ray's own words; either way where Ray's logs are.

    Why: Ray says only "The current node timed out during startup" when its raylet died at once (a
    memory cap left it no room for its object store: ``mmap failed``), and Relay's advice to try
    again did not help; the cause was in the session's raylet.err, which nothing named.
    """
    if logs is None:
        return f"could not start a local Ray instance: {exc}; on a busy machine try again, or pass run.num_cpus lower"
    cause = start_failure_cause(logs)
    if cause is not None:
        return f"could not start a local Ray instance: {cause} (Ray's logs: {logs})"
    return (
        f"could not start a local Ray instance: {exc}; on a busy machine try again, or pass run.num_cpus lower "
        f"(Ray's logs, raylet.err and gcs_server.err first, may say why: {logs})"
    )


# What a line of Ray's start-up logs means, and its fix, first match wins (checked in START_LOGS' order).
START_FAILURE_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("mmap failed", "cannot allocate memory", "plasmaallocator initialization failed", "std::bad_alloc"),
        "its object store could not get its memory ({quote}): a memory cap (ulimit -v, prlimit --as, a "
        "container's limit) or a small /dev/shm leaves less than Ray's default store (30% of the machine's "
        "memory); set run.object_store_memory lower, e.g. run.object_store_memory=1GB",
    ),
    (
        ("no space left on device",),
        "the disk of Ray's temp folder is full ({quote}); free space there, or point RAY_TMPDIR at a disk with room",
    ),
    (
        ("address already in use", "failed to bind"),
        "a port Ray needs is taken by another program ({quote}); stop it (another Ray instance: `ray stop`) "
        "or try again",
    ),
)
START_LOGS = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out", "dashboard.err", "dashboard.log")
LOG_TAIL_BYTES = 256 * 1024  # how much of each log is read: the cause is near its end
RAY_LINE_PREFIX = re.compile(r"^\[[^\]]*\]\s*(\([a-z_]+\)\s*)?")  # "[2026-... E 20087 20096] (raylet) "


def start_failure_cause(logs: Path) -> str | None:
    """The cause of a failed start that Ray's logs in ``logs`` name (memory, disk, port), with its fix; else None."""
    for name in START_LOGS:
        for line in _tail_lines(logs / name):
            lowered = line.lower()
            for needles, advice in START_FAILURE_CAUSES:
                if any(needle in lowered for needle in needles):
                    quote = f"{name}: {RAY_LINE_PREFIX.sub('', line.strip())[:160]}"
                    return advice.format(quote=quote)
    return None


def _tail_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace").splitlines()
    except OSError:  # a log this start did not write
        return []


def session_logs(began: float) -> Path | None:
    """The logs folder of the Ray session this process created since ``began`` (``time.time()``), or None.

    Ray names a new session's folder ``session_<date>_<pid of the process that started it>`` in its temp
    folder (``RAY_TMPDIR``, else the system's temp folder + ``/ray``); the newest one of this process wins
    (a dashboard port retry starts a second).
    """
    try:
        from ray._common.utils import get_default_ray_temp_dir

        temp = Path(get_default_ray_temp_dir())
        sessions = [
            path
            for path in temp.glob(f"session_*_{os.getpid()}")
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime >= began - 1.0
        ]
    except (ImportError, OSError):  # another Ray, or a temp folder that cannot be read
        return None
    return max(sessions, key=lambda path: path.name) / "logs" if sessions else None


def _init_kwargs(
    address: str | None, num_cpus: int | None, include_dashboard: bool, object_store_memory: int | None = None
) -> dict[str, Any]:
    """ray.init arguments: join ``address`` or RAY_ADDRESS (a Ray job sets it), else start a local instance.

    ``address="local"`` because a bare ray.init() joins whatever cluster the machine's
    ``<ray temp dir>/ray_current_cluster`` file names: someone's `ray start`, or a head that
    died without `ray stop` (the file stays behind). Joining then failed on ``num_cpus``, or
    hung on a dead address. Resources (``num_cpus``, ``object_store_memory``) are only given when
    starting the local instance (ray.init refuses them when it connects to a cluster); ``address``
    "local" starts one too.
    """
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if address and address != "local":
        kwargs["address"] = address
        if object_store_memory is not None:
            logger.warning("run.object_store_memory applies only to a local Ray instance; %s keeps its own", address)
    elif not address and os.environ.get("RAY_ADDRESS"):
        said = logger.info if object_store_memory is None else logger.warning
        said(
            "connecting to the cluster in RAY_ADDRESS; run.num_cpus and run.object_store_memory apply only to a "
            "local instance"
        )
    else:
        kwargs.update(address="local", num_cpus=num_cpus, include_dashboard=include_dashboard)
        if object_store_memory is not None:
            kwargs["object_store_memory"] = object_store_memory
        if include_dashboard:
            kwargs["dashboard_port"] = dashboard_port()
    return kwargs


def _init_ray(ray: Any, kwargs: dict[str, Any]) -> None:
    """``ray.init(**kwargs)``; a Ctrl-C while it starts is not lost (``interrupts_kept``).

    ``dashboard_port`` can only see that a port is free, not keep it: two `relay run` started in the
    same second both saw 8265 free, and the second one's dashboard failed to bind it a minute later
    (Ray 2.60 gives up instead of moving on; a port taken before ``ray.init`` fails at once). So a
    local start checks the port again, and starts Ray, under a machine-wide lock (``port_lock``),
    which a second start waits for (a Ctrl-C still stops that wait at once). A start that lost its
    port all the same (the lock could not be had, or another program took the port) is retried once
    on a port the OS picks. Ray's start-up lines are cut to what a user can act on (``start_lines``).
    """
    with contextlib.ExitStack() as held:
        if "dashboard_port" in kwargs:  # checked again, and bound, under the lock
            held.enter_context(port_lock.dashboard_port_lock())
            kwargs = {**kwargs, "dashboard_port": dashboard_port()}
        held.enter_context(start_lines(local=kwargs.get("address") == "local"))
        held.enter_context(terminations_kept(ray))
        interrupted = held.enter_context(interrupts_kept(ray.shutdown))
        held.enter_context(join_abandoned_on_signal(kwargs.get("address")))  # joining only
        held.enter_context(start_failures_unless_interrupted(interrupted))
        _start_ray(ray, kwargs, interrupted)
    terminate_as_interrupt()


class HeldBack(logging.Filter):
    """Keeps every record of the logger it filters, to be handled later or dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def start_failures_unless_interrupted(interrupted: Sequence[int]) -> Iterator[None]:
    """Ray's lines about its processes failing to start are printed after the block, unless a Ctrl-C came in it.

    Why: a terminal's Ctrl-C reaches Ray's new processes too, and a dashboard it stopped made Ray
    log "ERROR services.py -- Failed to start the dashboard", then the last 20 lines of its log,
    before Relay's "interrupted before the stages started" line: noise about the user's own
    Ctrl-C. ``interrupted`` is ``interrupts_kept``'s list; without a Ctrl-C the lines are printed
    as Ray logged them, once ray.init has returned or raised (a start that failed by itself).
    """
    held = HeldBack()
    try:
        with filtered(held, SERVICES_LOGGER):
            yield
    finally:
        if not interrupted:
            for record in held.records:
                logging.getLogger(SERVICES_LOGGER).handle(record)


class Terminated(SystemExit):
    """SIGTERM in a driver that started or joined Ray (``terminate_as_interrupt``): exit 143.

    A SystemExit, as Ray's own handler raised, so every ``except (KeyboardInterrupt, SystemExit)``
    that records a run INTERRUPTED and closes its MLflow runs KILLED sees it as before; a caller
    that does not catch it still exits 143. Raised inside ``ray.wait`` or ``ray.get`` it comes out
    as Ray's SystemExit(1) instead: ``terminated_by_signal`` tells that one apart.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


_SIGTERM_RECEIVED = threading.Event()  # set by the handler ``terminate_as_interrupt`` installs


def terminated_by_signal() -> bool:
    """Whether a SIGTERM reached this process through ``terminate_as_interrupt``'s handler."""
    return _SIGTERM_RECEIVED.is_set()


def terminate_as_interrupt() -> None:
    """Make SIGTERM end this driver as Ctrl-C does (the run recorded INTERRUPTED), with exit 143 (``Terminated``).

    Why: ``ray.init`` leaves three SIGTERM handlers behind. Its Python one raised SystemExit(15), and
    a local instance's node replaced it by one that stops every Ray process from inside the handler
    and raises SystemExit(1); under both, the core worker's C++ failure handler (Abseil's, which
    covers SIGTERM) printed "*** SIGTERM received ... PC: @ ..." three times, and the process ended
    in SIGABRT (exit 134, the shell's "Aborted"). Setting the handler here replaces them for SIGTERM
    alone: the C++ handler keeps reporting real crashes (SIGSEGV, SIGABRT), and Ray's processes are
    still stopped, by the executor's shutdown (or Ray's exit hook). Only the main thread can set it.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: Any) -> None:
    _SIGTERM_RECEIVED.set()
    raise Terminated


@contextlib.contextmanager
def terminations_kept(ray: Any) -> Iterator[None]:
    """A SIGTERM while Ray starts raises ``Terminated`` (exit 143) at once, Ray stopped; Ray's own handlers are not set.

    Why: ``ray.init`` sets its SIGTERM handlers as it starts (one raises SystemExit(15), a local node's
    drains for 30 s, then stops Ray's processes and raises SystemExit(1)), so a SIGTERM in the seconds
    before ``terminate_as_interrupt`` ended `relay run` with 15 (or 1), its resume line up to 30 s late.
    Held until the start ended, as ``interrupts_kept`` holds a Ctrl-C, it was not prompt: a SIGTERM to
    the whole group (``timeout``) stops Ray's new GCS too, and ray.init then waited 60 s for it. So it
    raises where it lands, as Ray's did; one dropped there ("Exception ignored in", a weakref callback)
    is raised when the block ends, and a start that failed after one ends as terminated too. Python
    prints a dropped one ("Exception ignored in ... Traceback"); that print is kept out, as the
    exception is not lost. Only the main thread can set a handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        _raise_terminated(signum, frame)

    previous = signal.signal(signal.SIGTERM, note)
    try:
        with _ray_sigterm_handlers_skipped(ray), _dropped_terminations_unprinted():
            yield
    except BaseException as exc:
        if not noted:
            raise
        ray.shutdown()
        if isinstance(exc, Terminated):
            raise
        raise Terminated from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    if noted:  # raised where something dropped it
        ray.shutdown()
        _SIGTERM_RECEIVED.set()
        raise Terminated


@contextlib.contextmanager
def _dropped_terminations_unprinted() -> Iterator[None]:
    """Python's report of a ``Terminated`` it dropped (an at-fork hook, a weakref callback) is not printed.

    Why: ``terminations_kept`` raises it again when the block ends, so the run still exits 143 with
    Relay's line; the report was a traceback above that line (filelock's at-fork hook, as Ray forks).
    Every other unraisable exception goes to the hook that was there before.
    """
    previous = sys.unraisablehook

    def report(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Terminated):
            previous(unraisable)

    sys.unraisablehook = report
    try:
        yield
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def _ray_sigterm_handlers_skipped(ray: Any) -> Iterator[None]:
    """Ray's ``set_sigterm_handler`` does nothing in the block: the handler ``terminations_kept`` set stays."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "set_sigterm_handler", None)
    if original is None:  # another Ray: nothing to skip
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


HELD_CTRL_C_LINE = b"\nrelay: stopping once Ray's start ends; press Ctrl-C again to stop now\n"


@contextlib.contextmanager
def interrupts_kept(on_interrupt: Callable[[], None] = lambda: None) -> Iterator[list[int]]:
    """Hold a Ctrl-C that comes during the block until it ends; then call ``on_interrupt`` and raise it.

    Raised where it lands, a Ctrl-C while Ray is imported and started was lost or hung the run:
    Python runs a signal handler between any two bytecodes, also inside a weakref callback
    (importlib's module locks, during `import ray`) or an at-fork hook (logging's, each time Ray
    forks a process), where the exception is printed ("Exception ignored in ...") and dropped. The
    run then went on to the end, or, dropped before logging's hook released its lock, hung on the
    next log call. So the first Ctrl-C is only noted, and the block (bounded: Ray's start-up) ends
    first; a second one raises at once, for a block that does not end. ``on_interrupt`` stops what
    the block started. The first Ctrl-C is answered at once (``HELD_CTRL_C_LINE``): a loaded machine's Ray
    start takes half a minute, which the terminal spent silent. Only the main thread can set a handler;
    elsewhere the block runs as it is.
    The block gets the list of interrupts noted so far (empty: none), to tell what they caused.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    noted: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        if len(noted) > 1:  # asked twice: the user means now
            raise KeyboardInterrupt
        os.write(2, HELD_CTRL_C_LINE)  # not print: the main thread may be inside a print to stderr

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        on_interrupt()
        raise KeyboardInterrupt


@contextlib.contextmanager
def join_abandoned_on_signal(address: str | None) -> Iterator[None]:
    """While this driver joins the cluster at ``address``, a Ctrl-C or SIGTERM still ends the process (130, 143).

    Why: joining an address where no GCS answers (a port taken by something else, a GCS gone
    behind a firewall), ray.init waits inside Ray's C++ client, retrying "Failed to connect to
    GCS" for good, and Python's signal handlers run only between bytecodes of the main thread,
    so Ctrl-C and SIGTERM did nothing; only SIGKILL ended it. The signal still reaches the
    wakeup fd, which a thread watches: the join is given ``JOIN_SIGNAL_GRACE_S`` to end by itself
    (``interrupts_kept`` then raises as usual), else the process exits at once, 130 (SIGTERM: 143).
    Joining writes nothing and starts no local process, so nothing is left behind. A local start (``address``
    None or "local") is bounded and keeps ``interrupts_kept``'s handling alone; so does a thread
    other than the main one, which cannot own the wakeup fd.
    """
    if address in (None, "local") or threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    joined = threading.Event()
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        with contextlib.suppress(OSError):
            received = b"\0"
            while received and received[0] not in (signal.SIGINT, signal.SIGTERM):  # other signals: not ours
                received = os.read(read_end, 1)
            if received and not joined.wait(JOIN_SIGNAL_GRACE_S):
                os.write(2, f"\nrelay: interrupted while joining the Ray cluster at {address}\n".encode())
                os._exit(EXIT_TERMINATED if received[0] == signal.SIGTERM else EXIT_INTERRUPTED)

    watcher = threading.Thread(target=watch, daemon=True, name="relay-join-signals")
    watcher.start()
    try:
        yield
    finally:
        joined.set()
        signal.set_wakeup_fd(previous_fd)
        os.close(write_end)  # the watcher's read returns (empty) and it ends
        watcher.join(JOIN_SIGNAL_GRACE_S)
        os.close(read_end)


def _start_ray(ray: Any, kwargs: dict[str, Any], interrupted: Sequence[int] = ()) -> None:
    """``ray.init``, retried once on another port when the dashboard's was taken meanwhile.

    ``interrupted``: the Ctrl-Cs noted while Ray started. A Ctrl-C in a terminal reaches the whole
    process group, Ray's own processes too, so a dashboard that died then was stopped, not
    outbid for its port: the start ends as interrupted, without a retry or a word about ports.
    """
    try:
        ray.init(**kwargs)
    except Exception as exc:  # Ray raises a bare Exception for a dashboard that did not start
        if interrupted:
            ray.shutdown()
            raise KeyboardInterrupt from exc
        if "dashboard_port" not in kwargs or "dashboard" not in str(exc).lower():
            raise
        retry_port = dashboard_port(preferred=0)
        logger.warning(
            "Ray's dashboard lost port %s to another process; starting on %s", kwargs["dashboard_port"], retry_port
        )
        ray.shutdown()
        ray.init(**{**kwargs, "dashboard_port": retry_port})


def dashboard_port(preferred: int | None = None) -> int:
    """``preferred`` (default: Ray's usual port) when it is free, else any free one; 0 asks the OS for one.

    A second local Ray instance on the machine (another `relay run`, another user's tests)
    holds 8265, and Ray 2.60 then fails to start the dashboard instead of moving on.
    """
    for port in (DASHBOARD_PORT if preferred is None else preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    return DASHBOARD_PORT
