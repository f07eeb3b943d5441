"""Labeling actors on a real local Ray: kept warm across generations where the cluster has room, never a stall.

Two generations of (a 1-CPU stage, then a sharded stage on 2 actors of 1 CPU). Every shard
records the pid of the actor that ran it, so the stored tables show which processes labeled
each generation:

- 3 logical CPUs: the pool fits beside the 1-CPU stages, so both generations run on the same
  two actors (no actor start in the second one).
- 2 logical CPUs: a kept pool would hold both CPUs and g01/train would wait forever; the
  executor gives each call its own pool instead, and the run finishes.
- A sharded stage that fails on a kept pool releases it: its retry runs on new actors.

And the dispatch itself, on a pool of two actors: a slow actor never holds the fast one up, results
come back in shard order, and the shards read ahead of the consumer stay within a bounded window.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import pyarrow as pa
import pytest

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.distributed import SHARDS_HELD_PER_ACTOR, ActorPool
from orchestrator.engine.executors import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner, RunSummary, StageState
from tests.unit.orchestrator.engine.test_allocator import served_from_heap

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SHARDS = 8
POOL = Resources(num_cpus=1, workers=2)


def step(ctx, inputs, params):
    """A 1-CPU stage between the labeling stages (training, in a real pipeline)."""
    return StageResult(outputs={params["out"]: {"pid": os.getpid()}})


def shard_pid(shard: int, fail: bool) -> tuple[int, int, bool]:
    """(shard, the actor's pid, whether its malloc serves a 20 MB buffer from the heap: tune_malloc ran there)."""
    if fail:
        raise RuntimeError(f"shard {shard} failed on purpose")
    return shard, os.getpid(), served_from_heap()


def label(ctx, inputs, params):
    """A sharded stage: which process ran each shard (it fails on attempts before ``succeed_on``)."""
    fn = functools.partial(shard_pid, fail=ctx.attempt < params["succeed_on"])
    shards, pids, heap = zip(*ctx.map_shards(fn, range(SHARDS)))
    table = pa.table(
        {"shard": pa.array(shards, pa.int64()), "pid": pa.array(pids, pa.int64()), "heap": pa.array(heap, pa.bool_())}
    )
    return StageResult(outputs={params["out"]: table})


def two_generations(succeed_on: int = 1) -> Pipeline:
    stages = []
    previous: tuple[str, ...] = ()
    for g in range(2):
        stages.append(Stage(f"g0{g}/train", step, previous, (f"g0{g}/model",), params={"out": f"g0{g}/model"}))
        stages.append(
            Stage(
                f"g0{g}/label",
                label,
                (f"g0{g}/model",),
                (f"g0{g}/labels",),
                params={"out": f"g0{g}/labels", "succeed_on": succeed_on if g == 1 else 1},
                resources=POOL,
                parallelism=Parallelism.SHARDS,
                retries=1,
            )
        )
        previous = (f"g0{g}/labels",)
    return Pipeline("pools", stages)


def run(tmp_path: Path, num_cpus: int, pipeline: Pipeline) -> tuple[RunSummary, dict[str, set[int]]]:
    """Run ``pipeline`` on a fresh local Ray of ``num_cpus`` logical CPUs; the actor pids of each labeling stage."""
    executor = RayExecutor(num_cpus=num_cpus)
    try:
        executor.warm_up(pipeline)
        store = ArtifactStore(str(tmp_path / "store"))
        runner = Runner(store, executor, NullTracker(), "v1", seed=0)
        summary = runner.run(pipeline, "pools")
    finally:
        executor.shutdown()
    pids = {}
    for g in range(2):
        table = store.load(summary.manifests[f"g0{g}/label"].outputs[f"g0{g}/labels"])
        assert table.column("shard").to_pylist() == list(range(SHARDS))  # in shard order, none lost
        pids[f"g0{g}"] = set(table.column("pid").to_pylist())
        assert all(table.column("heap").to_pylist()), "a labeling actor kept glibc's per-batch mmap (tune_malloc)"
    return summary, pids


def test_labeling_actors_stay_warm_across_generations_when_the_cluster_has_room(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.engine.executors")
    summary, pids = run(tmp_path, 3, two_generations())
    assert "labeling actors: kept for the run" in caplog.text
    assert summary.names(StageState.SUCCEEDED) == [stage.name for stage in two_generations().stages]
    attempts = {name: outcome.attempts for name, outcome in summary.stages.items()}
    assert set(attempts.values()) == {1}, f"a retry releases the pool; attempts: {attempts}"
    assert len(pids["g00"]) == 2
    assert pids["g01"] == pids["g00"]  # the same two processes: no actor started for the second generation


def test_without_room_for_a_kept_pool_each_call_gets_its_own_and_the_run_finishes(tmp_path):
    summary, pids = run(tmp_path, 2, two_generations())
    assert summary.stages["g01/train"].state is StageState.SUCCEEDED
    assert summary.stages["g01/label"].state is StageState.SUCCEEDED
    assert len(pids["g00"]) == len(pids["g01"]) == 2
    assert not pids["g00"] & pids["g01"]


def test_a_stage_that_fails_on_a_kept_pool_retries_on_new_actors(tmp_path):
    summary, pids = run(tmp_path, 3, two_generations(succeed_on=2))
    assert summary.stages["g01/label"].state is StageState.SUCCEEDED
    assert summary.stages["g01/label"].attempts == 2
    assert len(pids["g01"]) == 2
    assert not pids["g00"] & pids["g01"]  # g00's pool was released with the failed attempt


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
    executor = RayExecutor(num_cpus=2)
    pool = ActorPool.start(POOL, label="dispatch")
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
    assert 1 <= on_slow < shards // 2, f"the slow actor ran {on_slow} of {shards} shards"


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
