"""When a run lets its kept labeling actors go, and how: the bookkeeping of ``KeptActors`` and the looks of a wait.

No Ray: pools are plain objects that record how they were released. A pool the run lets go while a
stage call may still hold it is asked to leave (``ActorPool.let_go``: the call, once placed, must not
read it as lost); one no call holds any more is killed (``shutdown``).

Found on a real cluster of two 1-CPU nodes (labeling on 2 workers, one actor kept on the driver's
node): after the other node was lost, the run said "labeling actors now one pool per stage call (no
room to keep them)" but kept the actor its waiting labeling stage held, which held the only CPU that
stage waited for; and with no kept pool left in its books, the 30 s let-go never fired either. The run
waited for good.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage
from orchestrator.engine.actor_pool import StageActors
from orchestrator.engine.kept_actors import KeptActors
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.task import StageTask
from tests.unit.orchestrator.engine.toy import random_draw

LABEL = Resources(num_cpus=1, workers=2)  # the stage's own task and one actor
TRAIN = Resources(num_cpus=1)


class Pool:
    """An actor pool as ``KeptActors`` sees one: its resources, its actors, and how it was released."""

    def __init__(self, resources: Resources = LABEL, actors: int = 1) -> None:
        self.resources, self.actors = resources, [object() for _ in range(actors)]
        self.released: str | None = None  # "let go" (asked to leave) or "killed" (``shutdown``)

    def includes(self, other: Any) -> bool:
        return {id(a) for a in other.actors} <= {id(a) for a in self.actors}

    def shutdown(self, keep: Any = ()) -> None:
        self.released = self.released or "killed"

    def let_go(self) -> None:
        self.released = self.released or "let go"


def pipeline() -> Pipeline:
    return Pipeline(
        "kept",
        [
            Stage("g00/train", random_draw, (), ("m",), resources=TRAIN),
            Stage("g00/pseudo_label", random_draw, ("m",), ("l",), resources=LABEL, parallelism=Parallelism.SHARDS),
        ],
    )


def kept_one_on(cpus: float, *holders: str) -> tuple[KeptActors, Pool]:
    """A run's books as ``plan`` and ``start_planned`` leave them on a cluster of ``cpus`` CPUs, with one actor
    kept, and the stage calls ``holders`` (task refs) in flight on it."""
    actors = KeptActors()
    actors.plan(pipeline(), {"CPU": cpus})
    assert actors._kept == {LABEL: 1}
    pool = Pool()
    actors._pools[LABEL] = pool  # started, as ``start_planned`` would
    for ref in holders:
        actors.track(ref, StageActors(kept=pool, extra=0, label=""))  # as ``for_call`` hands it out
    return actors, pool


def test_a_shrink_with_no_room_lets_the_kept_actor_a_waiting_stage_holds_go():
    actors, pool = kept_one_on(2.0, "label task")
    actors.refit({"CPU": 1.0})  # the other node is lost
    assert actors._kept == {LABEL: 0} and pool.released is None  # retiring: its holder might be labeling on it
    assert actors.retiring() and actors.idle_kept()
    actors.let_go_retiring(waiting={"label task"})  # Ray has not placed the holder: it may wait for that CPU
    assert pool.released == "let go"  # asked to leave: the call, once placed, is not told it lost an actor
    assert not actors.retiring() and not actors.idle_kept()
    actors.release("label task", failed=False)  # the call ends, on its own task
    assert pool.released == "let go"


def test_a_retiring_actor_a_running_stage_labels_on_waits_for_its_end():
    actors, pool = kept_one_on(2.0, "label task")
    actors.refit({"CPU": 1.0})
    actors.let_go_retiring(waiting=set())  # placed: it may be labeling on the actor
    assert pool.released is None and actors.retiring()
    actors.release("label task", failed=False)
    assert pool.released == "killed" and not actors.retiring()


def test_when_ray_cannot_say_whether_a_holder_runs_the_retiring_actor_goes():
    """Without the state API a holder that waits cannot be told from one that runs: a wait for good is worse
    than a retry (a stage whose actor dies under it is retried, and keeps the shards it labeled)."""
    actors, pool = kept_one_on(2.0, "label task")
    actors.refit({"CPU": 1.0})
    actors.let_go_retiring(waiting=None)
    assert pool.released == "let go"


def test_an_idle_kept_actor_no_call_holds_is_stopped_at_once_on_a_shrink():
    actors, pool = kept_one_on(2.0)
    actors.refit({"CPU": 1.0})
    assert pool.released == "killed" and not actors.retiring()


def test_the_stalled_let_go_counts_and_asks_retiring_actors_to_leave_too():
    actors, pool = kept_one_on(3.0, "label task")
    actors.refit({"CPU": 1.0})
    assert actors.idle_kept() and actors.held() == {"CPU": 1.0, "GPU": 0.0}
    actors.let_go()
    assert pool.released == "let go" and not actors.idle_kept() and not actors.retiring()


def test_a_failed_call_leaves_kept_actors_another_call_labels_on_until_that_one_ends():
    actors, pool = kept_one_on(4.0, "first", "second")
    actors.release("first", failed=True)  # its retry starts on fresh actors ...
    assert actors._pools == {} and pool.released is None  # ... but the second call still labels on this one
    actors.release("second", failed=False)
    assert pool.released == "killed"


class FakeRay:
    """What a look at the cluster asks of ``ray``: its resources now."""

    def __init__(self, cpus: float) -> None:
        self.cpus = cpus

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus}


def executor_waiting_on(actors: KeptActors, cpus: float, unplaced: set[str] | None) -> RayExecutor:
    """A RayExecutor with a labeling call in flight (task ref ``label task``, Ray name ``g00/pseudo_label``)
    submitted just now, on a cluster of ``cpus`` CPUs whose state API says ``unplaced`` wait for a place."""
    executor = RayExecutor.__new__(RayExecutor)  # no Ray: only the looks' decisions are under test
    executor._ray = FakeRay(cpus)
    executor._actors = actors
    executor._task_names = {"label task": "g00/pseudo_label"}
    executor._waiting_since = {"label task": (time.monotonic(), LABEL)}
    executor._said_waiting, executor._coordinators = set(), set()
    executor._looked_at = float("-inf")
    executor._unplaced_stages = lambda: unplaced  # type: ignore[method-assign]
    return executor


def test_a_look_after_the_shrink_lets_the_kept_actor_of_a_waiting_labeling_stage_go():
    """The state the run hung in, at the look that follows the loss of the node."""
    actors, pool = kept_one_on(2.0, "label task")
    executor_waiting_on(actors, 1.0, unplaced={"g00/pseudo_label"})._look_around(["label task"])
    assert pool.released == "let go"


def test_a_look_keeps_the_retiring_actor_a_placed_labeling_stage_holds():
    actors, pool = kept_one_on(2.0, "label task")
    executor_waiting_on(actors, 1.0, unplaced=set())._look_around(["label task"])
    assert pool.released is None and actors.retiring()


class FakeContext:
    def get_node_id(self) -> str:
        return "ab" * 28


class FakeRayHere:
    def get_runtime_context(self) -> FakeContext:
        return FakeContext()


def test_a_labeling_stage_prefers_the_drivers_node_but_takes_another_with_room():
    """A soft affinity alone waits for the driver's node while that node could ever hold the task: the run's
    kept actor on its only CPU held every labeling stage back (two 1-CPU nodes, ``workers: 2``)."""
    executor = RayExecutor.__new__(RayExecutor)
    executor._ray = FakeRayHere()
    stage = Stage("g00/pseudo_label", random_draw, (), ("l",), resources=LABEL, parallelism=Parallelism.SHARDS)
    options = executor._task_options(StageTask(stage, "f" * 64, {}, "/store", "run", seed=0))
    strategy = options["scheduling_strategy"]
    assert strategy.node_id == "ab" * 28 and strategy.soft
    assert strategy._spill_on_unavailable, "a busy driver's node must not hold the stage back"
    assert options["num_cpus"] == 1
