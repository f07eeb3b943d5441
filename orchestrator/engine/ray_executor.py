"""RayExecutor: each stage as a Ray task on a local or joined Ray, and what the driver watches while it runs.

The executor the runner drives on a cluster (``executors.Executor``). What runs inside the Ray task
is ``ray_task``'s; the labeling actors kept between stages, ``kept_actors``'; the warnings of a
stage Ray cannot place, ``placement_warnings``'. What stays here is the driver's side: warming
workers before the first stage, submitting with the stage's resources and name, reading Ray's node
table and state API while stages wait, and turning a finished task into the stage's outcome.

Starting or joining Ray, and saying why a start failed, is ``ray_session``'s; how a Ctrl-C or a
SIGTERM ends the driver, and its exit codes, are ``signals``'.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.dag import Pipeline, ProgressSink, Resources, Stage, StageProgress
from orchestrator.engine import placement_warnings
from orchestrator.engine.executors import ReadProgress, with_progress
from orchestrator.engine.fingerprint import numerics
from orchestrator.engine.fit import LostNode, live_node_resources, live_nodes_by_id, lost_nodes, uses_actor_pool
from orchestrator.engine.kept_actors import KeptActors
from orchestrator.engine.placement_warnings import asked_amounts, infeasible_warning, waiting_message
from orchestrator.engine.progress import ProgressBoard
from orchestrator.engine.ray_session import init_failure, init_kwargs, init_ray
from orchestrator.engine.ray_task import (
    BoardSink,
    as_lost,
    import_modules,
    run_on_ray,
    task_name,
    with_remote_traceback,
)
from orchestrator.engine.signals import signals_held_through_shutdown
from orchestrator.engine.task import StageTask
from orchestrator.errors import RelayError

logger = logging.getLogger(__name__)

WARM_WAIT_S = 120.0  # the longest the first stage waits for the first warm worker
REFIT_EVERY_S = 15.0  # while stages run, how often the driver checks whether the cluster lost a node
# A run whose every stage in flight has waited this long for a place while its kept labeling actors sit idle lets
# them go: other work on the cluster (another run's kept actors) holds the rest, and both could wait for good.
KEPT_YIELD_S = 30.0
BOARD_READ_S = 10.0  # the longest one look at the progress board may take (the display skips it then)


def warm_modules(pipeline: Pipeline) -> list[str]:
    """What a worker imports before its first stage: the stage functions' modules and the Ray task's own."""
    return sorted({run_on_ray.__module__, *(stage.fn.__module__ for stage in pipeline.stages)})


def coordinates_ray_train(stage: Stage) -> bool:
    """Whether the stage's Ray task only coordinates Ray Train workers (data-parallel, workers > 1): it then asks
    for nothing and is placed at once, and what waits for a place is its worker group."""
    return stage.resources.workers > 1 and not uses_actor_pool(stage)


Shape = tuple[tuple[tuple[str, float], ...], ...]  # a group's bundles, each its (resource, amount) pairs, sorted


def group_shape(bundles: Sequence[Mapping[str, float]]) -> Shape:
    """A placement group's bundles (resource -> amount each) as a comparable value: amounts above 0, to Ray's
    granularity (0.0001), names and bundles sorted."""
    return tuple(
        sorted(tuple(sorted((key, round(amount, 4)) for key, amount in b.items() if amount > 0)) for b in bundles)
    )


def worker_group_shape(resources: Resources) -> Shape:
    """The placement group Ray Train reserves for a data-parallel stage: one bundle of one worker's resources
    per worker (``train_run``'s ``ScalingConfig``)."""
    return group_shape([asked_amounts(resources)] * resources.workers)


def waiting_worker_groups(coordinators: Mapping[str, Resources], pending: Sequence[Shape]) -> set[str]:
    """The data-parallel stage attempts (Ray name -> the stage's resources) whose worker group waits for a place,
    from the shapes of this job's PENDING placement groups (``pending``).

    Ray Train names none of its groups, so a group is told a stage's by its bundles. Where fewer groups of one
    shape wait than stages of that shape are in flight, none of those stages is counted: which of them runs is
    unknown, and a running stage must never read as waiting (its run would let its kept actors go, and warn).
    """
    waiting, in_flight = Counter(pending), Counter(worker_group_shape(asks) for asks in coordinators.values())
    return {
        name
        for name, asks in coordinators.items()
        if waiting[worker_group_shape(asks)] >= in_flight[worker_group_shape(asks)]
    }


class RayExecutor:
    """Runs each stage as a Ray task named after the stage, with the stage's CPUs, GPUs and custom resources,
    and owns the stages' actor pools.

    Starts its own local Ray instance, or connects to ``address`` (or the cluster in
    RAY_ADDRESS, which a Ray job sets), unless Ray is already initialised. The dashboard
    stays on: with it off, resources freed by stopped Tune trials leaked (Ray 2.x; observed
    with `relay tune`).

    Sharded stages get their actors from here (``KeptActors``): per stage ``Resources``, as many
    actors kept warm for the run as ``warm_up`` finds room for beside every other stage
    (``kept_workers``), the rest started for one stage call and released when it ends. A stage
    that fails on kept actors releases them, so the retry starts on fresh ones. ``shutdown``
    releases them all.
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
        self._coordinators: set[Any] = set()  # task refs of data-parallel stages (Ray Train's coordinators)
        self._said_waiting: set[Any] = set()  # task refs (one per attempt) already said to wait
        self._looked_at = float("-inf")  # when a wait last looked at the cluster (``_look_around``)
        self._paused_since: float | None = None  # when the run began waiting for another run's stage (``pause``)
        self._progress: ProgressSink | None = None
        self._actors = KeptActors()
        self._nodes_seen: dict[str, dict[str, float]] = {}  # node id -> its resources, while it lived
        self._read_nodes()

    def warm_up(self, pipeline: Pipeline) -> None:
        """Warm as many workers as the pipeline's widest layer runs at once, with its stages' modules.

        Also decides how many labeling actors stay up for the run: only here is every stage known.
        Kept actors start beside the first stage, so the first labeling stage finds them started too.
        """
        self.warm(warm_modules(pipeline), max(len(layer) for layer in pipeline.layers()))
        self._actors.plan(pipeline, dict(self._ray.cluster_resources()))

    def numerics(self, stage: Stage) -> dict[str, Any]:
        """The numerics a stage gets on Ray (part of its fingerprint): those its resources ask for, since each
        stage runs with its own threads, device and ranks here (``fingerprint.numerics``)."""
        return numerics(stage)

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
        remote = self._ray.remote(import_modules).options(num_cpus=1, max_retries=0, scheduling_strategy="DEFAULT")
        return remote.remote(self._warm_modules)

    def _before_first_submit(self) -> None:
        """Wait for the first warm worker, so the first stage lands on it instead of a cold one."""
        if self._warming:  # bounded: a worker that never imports must not hold the run back
            self._ray.wait(self._warming[:1], num_returns=1, timeout=WARM_WAIT_S)

    def _after_first_submit(self) -> None:
        """Warm the remaining workers, and start kept actor pools, beside the first stage."""
        self._warming.extend(self._warm_one() for _ in range(self._warm_later))
        self._warm_later = 0
        self._actors.start_planned()

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
        self._actors.refit(total)
        self._warn_if_infeasible(task.stage, total)
        first = not self._submitted
        if first:
            self._before_first_submit()
        self._submitted = True
        pool = self._actors.for_call(resources, task.stage.name) if uses_actor_pool(task.stage) else None
        ref = self._remote.options(**self._task_options(task)).remote(with_progress(task, self._progress), pool)
        self._stage_names[ref] = task.stage.name
        self._task_names[ref] = task_name(task)
        self._waiting_since[ref] = (time.monotonic(), task.stage.resources)
        if coordinates_ray_train(task.stage):
            self._coordinators.add(ref)
        if pool is not None:
            self._actors.track(ref, pool)
        if first:
            self._after_first_submit()
        return ref

    def _task_options(self, task: StageTask) -> dict[str, Any]:
        """The stage's resources, its name (``g01/train`` in `ray list tasks` and the dashboard), where it goes.

        A Ray Train coordinator (a data-parallel stage with workers > 1) holds nothing; it and a
        sharded stage's task (which holds one worker's resources) run beside this driver where
        there is room: losing a worker node then costs only the workers on it, which Ray Train
        and the runner replace, and never the task that waits for them (nor Ray Train's
        controller, which follows it). Where there is no room there, the task goes to a node that
        has it (``_spill_on_unavailable``): a soft affinity alone waits for the driver's node
        whenever that node could ever hold the task, and the run's kept labeling actor sat on the
        driver's only CPU, so every labeling stage waited for it (two 1-CPU nodes, ``workers: 2``)
        until the run let the actor go, 30 s later, and labeled without it. Either way the task
        never joins the caller's placement group: a Tune trial's 0.1-CPU bundle cannot hold a stage.
        """
        resources = task.stage.resources
        coordinator = coordinates_ray_train(task.stage)
        strategy: Any = "DEFAULT"
        if resources.workers > 1:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = self._ray.get_runtime_context().get_node_id()
            strategy = NodeAffinitySchedulingStrategy(here, soft=True, _spill_on_unavailable=True)
        return {
            "name": task_name(task),
            "num_cpus": 0 if coordinator else resources.num_cpus,
            "num_gpus": 0 if coordinator else resources.num_gpus,
            "resources": {} if coordinator else dict(resources.custom),
            "max_retries": 0,
            "scheduling_strategy": strategy,
        }

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

    def wait(self, handles: Sequence[Any], timeout_s: float | None = None) -> list[tuple[Any, Any]]:
        """Block until one task finishes, or ``timeout_s`` passes (then []); return (ref, result or original
        exception) pairs. While nothing finishes, the cluster is looked at every ``REFIT_EVERY_S``
        (``_look_around``), however short the waits the runner asks for."""
        if not handles:
            raise ValueError("wait() needs at least one handle; got none")
        self._paused_since = None  # something of the run is in flight: no pause goes on (``pause``)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            step = REFIT_EVERY_S if deadline is None else min(REFIT_EVERY_S, max(0.0, deadline - time.monotonic()))
            ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=step)
            if ready:
                break
            if time.monotonic() - self._looked_at >= REFIT_EVERY_S:
                self._look_around(handles)
            if deadline is not None and time.monotonic() >= deadline:
                return []
        finished = [(ref, self._outcome(ref)) for ref in ready]
        for ref, outcome in finished:
            self._actors.release(ref, failed=isinstance(outcome, BaseException))
        return finished

    def pause(self, seconds: float) -> None:
        """Sleep while the run has nothing in flight and waits for a stage another run computes (``stage_claims``);
        once it has waited ``KEPT_YIELD_S`` so, let its idle kept labeling actors go.

        Why: the other run's stage may be waiting for the CPUs those actors hold, and each run would
        wait for the other for good (two runs of one config on one cluster). A wait that long is no
        quick hand-over between twins; the run's labeling stages start actors per call afterwards.
        """
        now = time.monotonic()
        self._paused_since = now if self._paused_since is None else self._paused_since
        time.sleep(seconds)
        if not self._actors.idle_kept() or time.monotonic() - self._paused_since < KEPT_YIELD_S:
            return
        self._actors.let_go()
        logger.warning(
            "this run has waited %d s for a stage another run is computing while its kept labeling actors sat "
            "idle: letting them go, as that run may need their CPUs; labeling actors now start per stage call.",
            time.monotonic() - self._paused_since,
        )

    def _look_around(self, handles: Sequence[Any]) -> None:
        """What a wait does while nothing finishes: fit the kept actors to the cluster, let go the ones it no
        longer keeps that only waiting stages hold, let them all go if they stall this run, and warn about
        stages Ray has not placed. Ray's state API is read at most once per look (``_unplaced_stages``)."""
        self._looked_at = time.monotonic()
        unplaced = functools.cache(self._unplaced_stages)
        self._actors.refit(dict(self._ray.cluster_resources()))
        if self._actors.retiring():
            names = unplaced()
            waiting = None if names is None else {ref for ref in handles if self._task_names.get(ref) in names}
            self._actors.let_go_retiring(waiting)
        self._yield_kept_if_stalled(handles, unplaced)
        self._say_who_waits(handles, unplaced)

    def _yield_kept_if_stalled(self, handles: Sequence[Any], unplaced: Callable[[], set[str] | None]) -> None:
        """Let the kept actors go when nothing of this run has run for ``KEPT_YIELD_S`` because Ray cannot place it.

        Why: actors are kept against the cluster's total (``kept_workers``), as if the run had the
        cluster to itself. Two runs on one 2-CPU cluster (two users, the seeds of a science protocol
        run side by side), each labeling on 2 actors, each kept one, and each one's next stage waited
        for the CPU the other's actor held: both runs waited for good. A run that holds idle kept
        actors while every one of its stages in flight is unplaced makes no progress at all, so it
        lets them go, and its labeling stages start actors per call for the rest of the run (as
        inside a Tune trial). While a labeling stage runs (its task is placed), the run is
        progressing and keeps them; a labeling stage still waiting for its place finds the kept
        actors gone and labels without them (``map_on_actors`` drops an actor the run let go).
        A data-parallel stage waits for its worker group, not its task (``_unplaced_stages``): counted
        by its task alone, a run whose next stage trained on 2 workers held its kept actor for good.
        Retiring actors (no longer kept after the cluster shrank) count as kept here: a stage may be
        waiting for the very CPUs they hold. ``unplaced``: ``_unplaced_stages``, read once a look needs it.
        """
        if not self._actors.idle_kept():
            return
        now = time.monotonic()
        waited = [now - self._waiting_since[ref][0] for ref in handles if ref in self._waiting_since]
        if not waited or min(waited) < KEPT_YIELD_S or len(waited) < len(handles):
            return
        names = {self._task_names[ref] for ref in handles if ref in self._task_names}  # as Ray names each attempt
        if not names or not names <= (unplaced() or set()):  # not knowing: nothing is let go
            return
        held = self._actors.held()
        self._actors.let_go()
        logger.warning(
            "%s waited %d s for a place while this run's kept labeling actors sat idle, holding %s CPU and %s GPU. "
            "Letting them go; labeling actors now start per stage call.",
            ", ".join(sorted(names)),
            min(waited),
            f"{held['CPU']:g}",
            f"{held['GPU']:g}",
        )

    def _say_who_waits(self, handles: Sequence[Any], unplaced_stages: Callable[[], set[str] | None]) -> None:
        """Warn once about each stage attempt Ray has not placed for WAITING_WARN_S, with what it asks and has.

        A cluster large enough in total can still have no room: after a node loss, a Tune sweep's
        trial drivers (0.1 CPU each) kept the CPU their own stages needed, and the sweep waited
        forever without a word. Whether a task is placed comes from Ray's state API, by the task's
        name in Ray. Once per attempt, not per stage: a stage retried after its node was lost (with
        the custom resource only that node had) waited silently, its first attempt having been
        told already, and its retry's Ray name ("g01/train (attempt 2)") matched no stage name. A
        data-parallel stage is said to wait while its worker group does (``_unplaced_stages``).
        """
        now = time.monotonic()
        overdue = [
            ref
            for ref in handles
            if ref in self._waiting_since
            and now - self._waiting_since[ref][0] >= placement_warnings.WAITING_WARN_S  # one value, the message's too
            and ref not in self._said_waiting
        ]
        if not overdue:
            return
        unplaced = unplaced_stages() or set()  # not knowing: no warning rather than a wrong one
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

    def _unplaced_stages(self) -> set[str] | None:
        """Names (as Ray names each attempt) of this job's stage attempts that wait for a place: its tasks Ray has
        not placed on a node, and the data-parallel stages in flight whose worker group it has not placed.
        None when the state API cannot say.

        A data-parallel stage's task is Ray Train's coordinator: it asks for nothing, so Ray places it at
        once, and what waits is its worker group. Ray Train (v2, as v1) reserves the group as one
        placement group and starts its RayTrainWorker actors only once the group is placed, so while the
        group waits there are no worker actors, pending or not, to look for: the group itself, PENDING and
        created by this job (Ray Train's controller is an actor of the job), is the signal. Counted by its
        task alone, a data-parallel stage never waited, and a run whose next stage trained on 2 workers
        held its idle kept actor for good while another run held the rest (``_yield_kept_if_stalled``).
        Which stage a group is for is told by its shape (``waiting_worker_groups``).
        """
        coordinators = {self._task_names[ref]: self._waiting_since[ref][1] for ref in self._coordinators}
        try:
            from ray.util.state import list_placement_groups, list_tasks

            context = self._ray.get_runtime_context()  # its GCS: with other Ray instances on the machine,
            job, address = context.get_job_id(), context.gcs_address  # no guess
            filters = [("job_id", "=", job), ("state", "=", "PENDING_NODE_ASSIGNMENT")]
            found = list_tasks(address=address, filters=filters, limit=1000, raise_on_missing_output=False)
            groups = [("creator_job_id", "=", job), ("state", "=", "PENDING")]
            pending = (
                list_placement_groups(
                    address=address, filters=groups, detail=True, limit=1000, raise_on_missing_output=False
                )
                if coordinators
                else []
            )
        except Exception:  # no dashboard, an older state API: the callers decide what not knowing means
            return None
        shapes = [
            group_shape([bundle.get("unit_resources", {}) for bundle in group.bundles or []]) for group in pending
        ]
        return {task.name for task in found} | waiting_worker_groups(coordinators, shapes)

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
        self._coordinators.discard(ref)
        self._said_waiting.discard(ref)
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, BaseException) and not isinstance(cause, exceptions.RayTaskError):
                return as_lost(stage, with_remote_traceback(cause, exc))
            return with_remote_traceback(exc, exc)
        except Exception as exc:
            return as_lost(stage, exc)

    def shutdown(self) -> None:
        """Release every actor pool, and stop Ray if this executor started it."""
        self._actors.shutdown(stop=self._ray.is_initialized())
        if self._owns_ray and self._ray.is_initialized():
            with signals_held_through_shutdown(self._ray):  # Ray stopped whole; a SIGTERM still ends the run as one
                self._ray.shutdown()
        self._owns_ray = False


def _read_board(ray: Any, board: Any) -> list[StageProgress]:
    return ray.get(board.snapshot.remote(), timeout=BOARD_READ_S)
