"""Labeling actors on a real local Ray: kept warm across generations as far as the cluster has room, never a stall.

Two generations of (a training stage, then a sharded stage of 1-CPU workers: its own task and
``workers - 1`` actors). Every shard records the name of the actor that ran it (or that the
stage's own task did), so the stored tables show which actors labeled each generation, and
g01/train records which labeling actors are still up while it runs (actor names carry the
pool's number, so a kept actor is told from one started for a call; and a tag of their executor,
which the tests drop: ``untagged``):

- 2 workers, 3 logical CPUs: the one actor fits beside the 1-CPU stages, so both generations
  run on the same actor (none started for the second one) and on their own task.
- 3 workers, 3 logical CPUs, a 2-CPU training stage: keeping both actors would leave g01/train
  waiting forever; one is kept (and g01/train runs beside it), the other is started for each
  call, and the run finishes.
- A sharded stage that fails on kept actors releases them: its retry runs on new actors.
- Two executors in one Ray job (a sweep's trials) label at once, each on actors of its own.

And the dispatch itself, on a pool of two actors: a slow actor never holds the fast one up, an
actor that cannot start holds no shard back, results come back in shard order, and the shards
read ahead of the consumer stay within a bounded window.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pytest

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage, StageResult
from orchestrator.engine import ray_executor
from orchestrator.engine.actor_pool import SHARDS_HELD_PER_ACTOR, ActorPool
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.run_state import RunSummary
from orchestrator.engine.runner import Runner, StageState
from orchestrator.engine.task import StageTask
from tests.integration.cluster import wait_for
from tests.unit.orchestrator.engine.test_allocator import served_from_heap

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SHARDS = 8
POOL = Resources(num_cpus=1, workers=2)
STAGE_TASK = "the stage's own task"  # what a shard labeled by the stage's task (its first worker) records


def actor_names(pools: range, actors: int = 2) -> set[str]:
    """The names the executor gives the labeling actors of pools ``pools``, its tag dropped (``label pool N worker I``)."""
    return {f"label pool {n} worker {i}" for n in pools for i in range(actors)}


def untagged(name: str) -> str:
    """An actor's name without its executor's tag: ``label pool 3fa9c2d0-2 worker 0`` is ``label pool 2 worker 0``.

    The tag is random (it keeps executors in one Ray job apart); the pool's number is what these tests check.
    """
    return re.sub(r" pool [0-9a-f]+-(\d+) worker ", r" pool \1 worker ", name)


def step(ctx, inputs, params):
    """A 1-CPU stage between the labeling stages (training, in a real pipeline): which labeling actors are up now."""
    import ray

    up = {untagged(name) for name in ray.util.list_named_actors()}  # a dead actor's name is free again
    kept = sorted(up & actor_names(range(1, 4)))
    return StageResult(outputs={params["out"]: {"pid": os.getpid(), "labeling_actors_up": kept}})


def shard_actor(shard: int, fail: bool) -> tuple[int, str, bool]:
    """(shard, the actor's name, whether its malloc serves a 20 MB buffer from the heap: tune_malloc ran there)."""
    import ray

    if fail:
        raise RuntimeError(f"shard {shard} failed on purpose")
    name = ray.get_runtime_context().get_actor_name()
    return shard, untagged(name) if name else STAGE_TASK, served_from_heap()


def label(ctx, inputs, params):
    """A sharded stage: which actor ran each shard (it fails on attempts before ``succeed_on``)."""
    fn = functools.partial(shard_actor, fail=ctx.attempt < params["succeed_on"])
    shards, names, heap = zip(*ctx.map_shards(fn, range(SHARDS)))
    table = pa.table(
        {"shard": pa.array(shards, pa.int64()), "actor": pa.array(names), "heap": pa.array(heap, pa.bool_())}
    )
    return StageResult(outputs={params["out"]: table})


def two_generations(succeed_on: int = 1, pool: Resources = POOL, train_cpus: float = 1) -> Pipeline:
    stages = []
    previous: tuple[str, ...] = ()
    for g in range(2):
        stages.append(
            Stage(
                f"g0{g}/train",
                step,
                previous,
                (f"g0{g}/model",),
                params={"out": f"g0{g}/model"},
                resources=Resources(num_cpus=train_cpus),
            )
        )
        stages.append(
            Stage(
                f"g0{g}/label",
                label,
                (f"g0{g}/model",),
                (f"g0{g}/labels",),
                params={"out": f"g0{g}/labels", "succeed_on": succeed_on if g == 1 else 1},
                resources=pool,
                parallelism=Parallelism.SHARDS,
                retries=1,
            )
        )
        previous = (f"g0{g}/labels",)
    return Pipeline("pools", stages)


def run(
    tmp_path: Path, num_cpus: int, pipeline: Pipeline, other_run_holds: int = 0, warm_up: bool = True
) -> tuple[RunSummary, dict[str, set[str]]]:
    """Run ``pipeline`` on a fresh local Ray of ``num_cpus`` logical CPUs.

    ``other_run_holds`` CPUs are taken first by an actor that never lets go (another run's kept
    labeling actor on the same cluster). Without ``warm_up`` the run keeps no actors (as in a
    Tune trial). Returns the names of the actors that labeled each generation, and under
    ``up during g01/train`` the labeling actors that were up while g01/train ran.
    """
    executor = RayExecutor(num_cpus=num_cpus)
    holder = _another_runs_actor(other_run_holds) if other_run_holds else None
    try:
        if warm_up:
            executor.warm_up(pipeline)
        store = ArtifactStore(str(tmp_path / "store"))
        runner = Runner(store, executor, NullTracker(), "v1", seed=0)
        summary = runner.run(pipeline, "pools")
    finally:
        del holder
        executor.shutdown()
    names = {}
    for g in range(2):
        table = store.load(summary.manifests[f"g0{g}/label"].outputs[f"g0{g}/labels"])
        assert table.column("shard").to_pylist() == list(range(SHARDS))  # in shard order, none lost
        names[f"g0{g}"] = set(table.column("actor").to_pylist())
        assert all(table.column("heap").to_pylist()), "a labeling actor kept glibc's per-batch mmap (tune_malloc)"
    trained = store.load(summary.manifests["g01/train"].outputs["g01/model"])
    names["up during g01/train"] = set(trained["labeling_actors_up"])
    return summary, names


def test_labeling_actors_stay_warm_across_generations_when_the_cluster_has_room(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.engine")
    summary, names = run(tmp_path, 3, two_generations())
    assert "labeling actors: kept for the run" in caplog.text
    assert summary.names(StageState.SUCCEEDED) == [stage.name for stage in two_generations().stages]
    attempts = {name: outcome.attempts for name, outcome in summary.stages.items()}
    assert set(attempts.values()) == {1}, f"a retry releases the pool; attempts: {attempts}"
    kept = actor_names(range(1, 2), actors=1)  # 2 workers: the stage's task and one actor
    assert names["up during g01/train"] == kept
    for g in ("g00", "g01"):  # no actor started for the second generation; the task labels from the start
        assert STAGE_TASK in names[g] and names[g] <= kept | {STAGE_TASK}


def test_with_room_for_one_actor_one_is_kept_and_the_other_started_per_call(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.engine")
    pipeline = two_generations(pool=Resources(num_cpus=1, workers=3), train_cpus=2)
    summary, names = run(tmp_path, 3, pipeline)
    assert "labeling actors: 1 of 2 kept for the run" in caplog.text
    assert summary.stages["g01/train"].state is StageState.SUCCEEDED
    assert summary.stages["g01/label"].state is StageState.SUCCEEDED
    kept = "label pool 1 worker 0"  # started beside g00/train; pools 2 and 3 are g00's and g01's second actor
    assert kept in names["up during g01/train"]  # g01/train got its 2 CPUs beside it
    assert names["g00"] <= {kept, "label pool 2 worker 0", STAGE_TASK}
    assert names["g01"] <= {kept, "label pool 3 worker 0", STAGE_TASK}


class _Holder:
    def ready(self) -> bool:
        return True


def _another_runs_actor(cpus: int):
    """An actor holding ``cpus`` CPUs for as long as it lives, started before the run's own stages."""
    import ray

    holder = ray.remote(_Holder).options(num_cpus=cpus, name="another run's kept actor").remote()
    ray.get(holder.ready.remote())
    return holder


@pytest.mark.timeout(300)
def test_kept_actors_let_go_when_another_run_holds_the_rest_of_the_cluster(tmp_path, caplog, monkeypatch):
    """Two runs on one 2-CPU cluster each kept an actor, and each one's next train stage waited for good.

    Here the other run is an actor holding one CPU: this run keeps one actor (sized against the
    cluster's total), so g01/train finds no CPU. Nothing of the run can then run, and it lets its
    idle kept actor go; g01/train runs and the run finishes (before, it waited forever).
    """
    monkeypatch.setattr(ray_executor, "KEPT_YIELD_S", 2.0)
    monkeypatch.setattr(ray_executor, "REFIT_EVERY_S", 1.0)
    caplog.set_level(logging.INFO, logger="orchestrator.engine")
    summary, names = run(tmp_path, 2, two_generations(), other_run_holds=1)
    assert "labeling actors: kept for the run" in caplog.text
    assert summary.names(StageState.SUCCEEDED) == [stage.name for stage in two_generations().stages]
    assert "Letting them go; labeling actors now start per stage call" in caplog.text
    assert "label pool 1 worker 0" not in names["up during g01/train"]  # the kept actor was let go


@pytest.mark.timeout(300)
def test_a_run_waiting_for_another_runs_stage_lets_its_idle_kept_actors_go(tmp_path, caplog, monkeypatch):
    """A run waiting for a stage another run computes (``stage_claims``), nothing of its own in flight, kept its
    labeling actors: the other run's stage could be waiting for their CPU, and each run for the other. Here the
    run's first stage has run (its kept actor started beside it) and the run pauses as the runner does."""
    import ray

    monkeypatch.setattr(ray_executor, "KEPT_YIELD_S", 0.0)
    caplog.set_level(logging.WARNING, logger="orchestrator.engine")
    pipeline = two_generations()
    executor = RayExecutor(num_cpus=2)
    try:
        executor.warm_up(pipeline)
        first = pipeline.stages[0]
        task = StageTask(first, "0" * 64, {}, str(tmp_path / "store"), "pools", seed=0)
        ((_, outcome),) = executor.wait([executor.submit(task)])
        assert not isinstance(outcome, BaseException), outcome
        kept = "label pool 1 worker 0"
        wait_for(lambda: kept in {untagged(name) for name in ray.util.list_named_actors()}, 120, "the kept actor")
        executor.pause(0.01)
        assert "letting them go, as that run may need their CPUs" in caplog.text
        # a dead actor's name is free again: the kept actor is gone once its name is
        wait_for(lambda: kept not in {untagged(name) for name in ray.util.list_named_actors()}, 120, "its end")
    finally:
        executor.shutdown()


@pytest.mark.timeout(300)
def test_a_labeling_stage_with_one_free_cpu_labels_on_its_own_task(tmp_path):
    """Another run holds 1 of 2 CPUs and this run keeps no actors: each labeling stage has one CPU to share.

    Its actor must not take that CPU before the stage's task is placed: it would then wait for
    shards from a task that waits for its CPU, for good. The task starts its actors itself once it
    runs, so the actor waits for a CPU instead, and the task labels every shard.
    """
    summary, names = run(tmp_path, 2, two_generations(), other_run_holds=1, warm_up=False)
    assert summary.names(StageState.SUCCEEDED) == [stage.name for stage in two_generations().stages]
    assert names["g00"] == names["g01"] == {STAGE_TASK}


def test_a_stage_that_fails_on_a_kept_pool_retries_on_new_actors(tmp_path):
    summary, names = run(tmp_path, 3, two_generations(succeed_on=2))
    assert summary.stages["g01/label"].state is StageState.SUCCEEDED
    assert summary.stages["g01/label"].attempts == 2
    assert names["g01"] <= actor_names(range(2, 4), actors=1) | {STAGE_TASK}
    assert not names["g00"] & names["g01"] - {STAGE_TASK}  # g00's pool was released with the failed attempt


def labeled_in_a_trial(store_root: str) -> dict[str, set[str]]:
    """What a Tune trial does (``run_trial``): a Runner on ``RayExecutor()`` in a task, no warm-up."""
    store = ArtifactStore(store_root)
    summary = Runner(store, RayExecutor(), NullTracker(), "v1", seed=0).run(two_generations(), "in-a-trial")
    tables = {g: store.load(summary.manifests[f"{g}/label"].outputs[f"{g}/labels"]) for g in ("g00", "g01")}
    return {g: set(table.column("actor").to_pylist()) for g, table in tables.items()}


def test_labeling_actors_start_outside_a_tune_trials_placement_group(tmp_path):
    """A trial runs in a placement group of 0.1 CPU that captures its children; a 1-CPU actor cannot fit in it.

    The actors (like the stage tasks) must leave the group; once they did not, and every trial of a
    sweep with ``resources.pseudo_label.workers=2`` failed. No actor is kept between a trial's stages
    (the trial never warms up), so each generation labels on a pool of its own.
    """
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    executor = RayExecutor(num_cpus=3)
    try:
        group = placement_group([{"CPU": 0.1}])
        ray.get(group.ready(), timeout=60)
        trial = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
        task = ray.remote(labeled_in_a_trial).options(num_cpus=0.1, scheduling_strategy=trial)
        names = ray.get(task.remote(str(tmp_path / "store")), timeout=300)
    finally:
        executor.shutdown()
    assert STAGE_TASK in names["g00"] and names["g00"] <= actor_names(range(1, 2), actors=1) | {STAGE_TASK}
    assert STAGE_TASK in names["g01"] and names["g01"] <= actor_names(range(2, 3), actors=1) | {STAGE_TASK}


MEETING_BOUND_S = 90.0  # how long a stage waits for the other executor's stage to have started its actors


class _Meeting:
    """Where the stages of two executors wait for each other, so each starts its actors while the other's are up."""

    def __init__(self) -> None:
        self.arrived = 0

    def arrive(self) -> None:
        self.arrived += 1

    def count(self) -> int:
        return self.arrived


def actor_or_task(shard: int) -> tuple[int, str]:
    """(shard, the full name of the actor that ran it, its executor's tag kept), or the stage's task."""
    import ray

    return shard, ray.get_runtime_context().get_actor_name() or STAGE_TASK


def label_beside_the_other_executor(ctx, inputs, params):
    """A sharded stage that labels once the other executor's stage has started too (its actors are up by then).

    The stage's task starts its actors before its body runs (``StageActors.mapper``); a start that
    failed never gets here, and the other stage labels once the bound passes.
    """
    import ray

    meeting = ray.get_actor(params["meeting"])
    ray.get(meeting.arrive.remote())
    deadline = time.monotonic() + MEETING_BOUND_S
    while ray.get(meeting.count.remote()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    shards, names = zip(*ctx.map_shards(actor_or_task, range(SHARDS)))
    return StageResult(outputs={params["out"]: pa.table({"shard": list(shards), "actor": list(names)})})


def labeling_task(n: int, root: str) -> StageTask:
    """Trial ``n``'s labeling stage: 2 workers (its task and one actor), meeting the other trial's before it labels."""
    stage = Stage(
        "g00/label",
        label_beside_the_other_executor,
        (),
        ("g00/labels",),
        params={"out": "g00/labels", "meeting": "two executors meet"},
        resources=POOL,
        parallelism=Parallelism.SHARDS,
    )
    return StageTask(stage, f"{n + 1:064x}", {}, root, f"trial-{n}", seed=0)


def test_two_executors_in_one_ray_job_label_at_once_each_on_actors_of_its_own(tmp_path):
    """A sweep's trials each run on a RayExecutor of their own, all in one Ray job: one namespace of actor names.

    Each executor numbered its pools from 1, so two trials labeling at once both started an actor
    named ``label pool 1 worker 0``: Ray refused the second (ActorAlreadyExistsError), and that
    stage and trial failed, on every retry. Here two executors' labeling stages start their actors
    while the other's are up; both must label every shard.
    """
    import ray

    first = RayExecutor(num_cpus=4)
    second = RayExecutor()  # Ray is up: as a trial's executor, it joins the job's namespace
    meeting = ray.remote(_Meeting).options(name="two executors meet", num_cpus=0).remote()
    root = str(tmp_path / "store")  # one store, as a sweep's trials share: the stages' fingerprints tell them apart
    try:
        started = [(executor, executor.submit(labeling_task(n, root))) for n, executor in enumerate((first, second))]
        outcomes = [outcome for executor, ref in started for _, outcome in executor.wait([ref])]
    finally:
        del meeting
        second.shutdown()
        first.shutdown()
    failed = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
    assert not failed, f"a labeling stage failed beside the other executor's: {failed}"
    tables = [ArtifactStore(root).load(manifest.outputs["g00/labels"]) for manifest in outcomes]
    assert all(table.column("shard").to_pylist() == list(range(SHARDS)) for table in tables)
    actors = [set(table.column("actor").to_pylist()) - {STAGE_TASK} for table in tables]
    assert not actors[0] & actors[1], "an actor of one executor labeled for the other"


# --------------------------------------------------------------------------- shard dispatch

SLOW_ACTOR = "dispatch worker 0"
SLOW_SHARD_S = 1.0


def shard_and_actor(shard: int) -> tuple[int, str]:
    """(shard, the name of the actor that ran it); the first actor takes a second a shard."""
    import time

    import ray

    actor = ray.get_runtime_context().get_actor_name()
    if actor == SLOW_ACTOR:
        time.sleep(SLOW_SHARD_S)
    return shard, actor


@pytest.fixture(scope="module")
def two_actors():
    """A pool of two 1-CPU shard actors on a fresh local Ray."""
    import ray

    executor = RayExecutor(num_cpus=2)
    pool = ActorPool.start(POOL, label="dispatch")
    ray.get([actor.ready.remote() for actor in pool.actors])
    try:
        yield pool
    finally:
        pool.shutdown()
        executor.shutdown()


def test_a_fast_actor_takes_the_shards_a_slow_one_would_hold_up_and_order_is_kept(two_actors):
    shards = 24
    results = list(two_actors.mapper("dispatch")(shard_and_actor, range(shards)))
    assert [shard for shard, _ in results] == list(range(shards))  # shard order, none lost
    on_slow = sum(actor == SLOW_ACTOR for _, actor in results)
    # A fixed round-robin gives each actor 12; here the slow actor keeps at most its queued shards
    # for each second the fast one needs to run ~20 empty shards.
    assert on_slow < shards // 2, f"the slow actor ran {on_slow} of {shards} shards"


def test_an_actor_that_cannot_start_holds_no_shard_back(two_actors):
    """An actor waiting for a resource the cluster lacks (as one waits for a CPU a stage beside it holds)."""
    stuck = ActorPool.start(Resources(num_cpus=0, custom={"absent": 1}), label="stuck")
    try:
        results = list(two_actors.joined(stuck).mapper("dispatch")(shard_and_actor, range(8)))
    finally:
        stuck.shutdown()
    assert [shard for shard, _ in results] == list(range(8))
    assert {actor for _, actor in results} <= {"dispatch worker 0", "dispatch worker 1"}


def test_dispatch_reads_at_most_a_bounded_window_of_shards_ahead_of_the_consumer(two_actors):
    pulled = 0

    def source():
        nonlocal pulled
        for shard in range(40):
            pulled += 1
            yield shard

    window = SHARDS_HELD_PER_ACTOR * len(two_actors.actors)
    for consumed, (shard, _) in enumerate(two_actors.mapper("dispatch")(shard_and_actor, source()), start=1):
        assert shard == consumed - 1
        assert pulled - consumed < window, f"{pulled} shards read with {consumed} consumed"


def test_the_calling_process_labels_beside_the_actors_and_drops_one_that_died_starting(two_actors):
    """``local``: the stage's own task is a worker; an actor killed before it started is left out, not fatal."""
    import ray

    dead = ActorPool.start(POOL, label="killed", count=1)
    ray.kill(dead.actors[0])
    results = list(two_actors.joined(dead).mapper("dispatch", local=True)(shard_and_actor, range(24)))
    assert [shard for shard, _ in results] == list(range(24))
    ran_on = {actor for _, actor in results}
    assert None in ran_on  # this process (no actor name) took shards
    assert ran_on <= {None, "dispatch worker 0", "dispatch worker 1"}


def answers_until_dead(actor, bound_s: float = 120.0) -> bool:
    """Ask ``actor`` until Ray says it is dead (True), or ``bound_s`` passed with it still answering (False).

    ``ray.kill`` returns before the actor is gone: a call sent just after it may still be answered.
    """
    import ray

    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ready.remote(), timeout=bound_s)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.2)
    return False


def test_a_kept_actor_lost_while_idle_is_said_to_be_lost_in_one_line_and_the_others_label(two_actors, caplog):
    """A kept actor whose node died between two stage calls: not "died starting" (it had started), and one line."""
    import ray

    lost = ActorPool.start(Resources(num_cpus=0, workers=2), label="lost", count=1)  # no CPU: the pool holds both
    ray.get(lost.actors[0].ready.remote())  # started and idle, as a kept actor between calls
    ray.kill(lost.actors[0])
    # known dead before the call, as a node lost between two stage calls is: on a loaded machine the 8 quick
    # shards were all labeled before the kill had landed, and the call had no loss to say (CI, once); and a
    # call sent right after ray.kill can still be answered, as the kill travels through the GCS (CI, once more)
    assert answers_until_dead(lost.actors[0]), "ray.kill never landed"
    caplog.set_level(logging.WARNING, logger="orchestrator.engine.actor_pool")
    results = list(two_actors.joined(lost).mapper("dispatch", local=True)(shard_and_actor, range(8)))
    assert [shard for shard, _ in results] == list(range(8))
    warnings = [r.getMessage() for r in caplog.records if "labeling actor" in r.getMessage()]
    assert len(warnings) == 1 and "was lost before it took a shard" in warnings[0], warnings
    assert "\n" not in warnings[0]


def test_without_local_an_actor_that_died_starting_fails_the_call(two_actors):
    import ray

    dead = ActorPool.start(POOL, label="killed", count=1)
    ray.kill(dead.actors[0])
    with pytest.raises(ray.exceptions.RayActorError):
        list(dead.mapper("dispatch")(shard_and_actor, range(4)))


def test_local_labels_every_shard_with_no_actors_and_none_refuses():
    empty = ActorPool(POOL, ())
    assert list(empty.mapper("dispatch", local=True)(lambda shard: shard * 2, range(5))) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="no actors and local=False"):
        list(empty.mapper("dispatch")(lambda shard: shard, range(5)))


def test_the_calling_process_drops_an_actor_killed_for_memory_while_it_started(two_actors, caplog):
    """Ray's memory monitor kills the newest worker first, often an actor still starting; Ray then answers the actor's
    first call with ``OutOfMemoryError``, not ``RayActorError``, and the stage failed instead of labeling without it.
    The actor here answers its first call with that error, as Ray does for an actor its monitor killed."""
    import ray

    @ray.remote(num_cpus=0)
    class KilledForMemory:
        def ready(self) -> None:
            raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.")

        def forget(self, key: str) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="orchestrator.engine.actor_pool")
    killed_actor = KilledForMemory.remote()

    def shards_once_the_actor_answered():
        """Shards 0-10, then 11 once the actor's answer to the call's first call is in: a probe sent after it is
        answered after it (Ray keeps one caller's calls in order), so the call settles the answer while it labels,
        however quickly its other shards go."""
        yield from range(11)
        with pytest.raises(ray.exceptions.OutOfMemoryError):
            ray.get(killed_actor.ready.remote())
        yield 11

    killed = ActorPool(POOL, (killed_actor,))
    mapper = two_actors.joined(killed).mapper("dispatch", local=True)
    results = list(mapper(shard_and_actor, shards_once_the_actor_answered()))
    assert [shard for shard, _ in results] == list(range(12))
    assert {actor for _, actor in results} <= {None, "dispatch worker 0", "dispatch worker 1"}
    assert any("was lost before it took a shard" in r.getMessage() for r in caplog.records)


def test_pools_started_without_a_label_in_one_job_each_start(two_actors):
    """The labeling benchmark and the GPU tests start pools without a label; two in one Ray job were both named
    ``shards worker 0``, and Ray refused the second."""
    import ray

    first = ActorPool.start(Resources(num_cpus=0, workers=1))
    second = ActorPool.start(Resources(num_cpus=0, workers=1))
    try:
        ray.get([actor.ready.remote() for actor in first.actors + second.actors], timeout=120)
    finally:
        first.shutdown()
        second.shutdown()
