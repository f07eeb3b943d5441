"""LocalExecutor runs StageTasks in submission order and returns failures as values; warm-up names the right modules."""

import logging
from pathlib import Path

import pytest

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.fit import uses_actor_pool
from orchestrator.engine.kept_actors import KeptActors, kept_message, kept_workers
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.ray_executor import warm_modules
from orchestrator.engine.ray_task import run_on_ray
from orchestrator.engine.task import StageTask
from tests.unit.orchestrator.engine.toy import CALLS, bad_value, random_draw, toy


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def task(tmp_path, stage: Stage, attempt: int = 1) -> StageTask:
    return StageTask(stage, f"fp-{stage.name}", {}, str(tmp_path), "run", seed=1, attempt=attempt)


def test_local_executor_runs_in_submission_order_and_returns_exceptions(tmp_path):
    executor = LocalExecutor()
    draw = executor.submit(task(tmp_path, Stage("draw", random_draw, (), ("draw",))))
    bad = executor.submit(task(tmp_path, Stage("bad", bad_value, (), ("bad_out",))))
    [(first, manifest)] = executor.wait([bad, draw])
    assert first is draw and isinstance(manifest, Manifest)
    assert ArtifactStore(str(tmp_path)).read_manifest("fp-draw") == manifest
    [(second, error)] = executor.wait([bad])
    assert second is bad and isinstance(error, ValueError)
    assert CALLS == ["draw", "bad"]


def test_a_stage_asking_for_workers_runs_as_one_process_locally(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator")
    stage = Stage("draw", random_draw, (), ("draw",), resources=Resources(num_cpus=1, workers=2))
    executor = LocalExecutor()
    [(_, manifest)] = executor.wait([executor.submit(task(tmp_path, stage))])
    assert isinstance(manifest, Manifest)
    assert "draw asks for 2 workers; the local backend runs it as one process" in caplog.text


def test_a_retry_is_the_same_task_with_the_next_attempt(tmp_path):
    first = task(tmp_path, Stage("draw", random_draw, (), ("draw",)))
    again = first.retry()
    assert again.attempt == 2 and (again.stage, again.fingerprint, again.input_refs) == (
        first.stage,
        first.fingerprint,
        first.input_refs,
    )


def test_warm_up_imports_the_stage_modules_and_the_ray_tasks_own():
    modules = warm_modules(toy())
    assert modules == sorted({"tests.unit.orchestrator.engine.toy", run_on_ray.__module__})


def test_a_busy_dashboard_port_moves_the_local_dashboard_elsewhere(monkeypatch) -> None:
    """Another local Ray (another run, another user's tests) holds the usual port: ours takes a free one."""
    import socket

    from orchestrator.engine import ray_session

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(ray_session, "DASHBOARD_PORT", taken)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        kwargs = ray_session.init_kwargs(None, 2, include_dashboard=True)
    assert kwargs["dashboard_port"] not in (taken, 0)
    assert "dashboard_port" not in ray_session.init_kwargs(None, 2, include_dashboard=False)


def labeling_pipeline(train: Resources, label: Resources, parallelism: Parallelism = Parallelism.SHARDS) -> Pipeline:
    """train -> label -> train2: the shape of two generations around one labeling stage."""
    return Pipeline(
        "toy",
        [
            Stage("g00/train", random_draw, (), ("m0",), resources=train),
            Stage("g00/label", random_draw, ("m0",), ("labels",), resources=label, parallelism=parallelism),
            Stage("g01/train", random_draw, ("labels",), ("m1",), resources=train),
        ],
    )


@pytest.mark.parametrize(
    ("train", "label", "total", "kept"),
    [
        # a stage of k workers is its own task and k - 1 actors: at most k - 1 are kept
        (Resources(num_cpus=1), Resources(num_cpus=1, workers=2), {"CPU": 2.0}, 1),
        (Resources(num_cpus=1), Resources(num_cpus=1, workers=2), {"CPU": 3.0}, 1),
        (Resources(num_cpus=1), Resources(num_cpus=1, workers=4), {"CPU": 4.0}, 3),
        # a 2-CPU training stage beside 1 kept actor needs 3 CPUs; 2 kept would leave g01/train waiting forever
        (Resources(num_cpus=2), Resources(num_cpus=1, workers=2), {"CPU": 2.0}, 0),
        (Resources(num_cpus=2), Resources(num_cpus=1, workers=3), {"CPU": 3.0}, 1),
        (Resources(num_cpus=1), Resources(num_cpus=1, workers=3), {"CPU": 3.0}, 2),
        # data-parallel training needs all its workers at once beside the kept actors
        (Resources(num_cpus=1, workers=2), Resources(num_cpus=1, workers=3), {"CPU": 3.0}, 1),
        (Resources(num_cpus=1, workers=2), Resources(num_cpus=1, workers=3), {"CPU": 4.0}, 2),
        # GPUs count apart from CPUs: actors sharing one GPU beside a 1-GPU training stage
        (
            Resources(num_cpus=1, num_gpus=1),
            Resources(num_cpus=1, num_gpus=0.5, workers=2),
            {"CPU": 8.0, "GPU": 1.0},
            0,
        ),
        (
            Resources(num_cpus=1, num_gpus=1),
            Resources(num_cpus=1, num_gpus=0.5, workers=3),
            {"CPU": 8.0, "GPU": 1.5},
            1,
        ),
        (
            Resources(num_cpus=1, num_gpus=1),
            Resources(num_cpus=1, num_gpus=0.5, workers=3),
            {"CPU": 8.0, "GPU": 2.0},
            2,
        ),
    ],
)
def test_labeling_actors_are_kept_only_as_far_as_every_other_stage_still_fits(train, label, total, kept):
    assert kept_workers(labeling_pipeline(train, label), total) == {label: kept}


def test_kept_actors_of_one_pool_leave_room_for_another_pools_whole_call():
    """Two labeling stages with different resources: each must still get all its workers beside the other's kept ones."""
    small, large = Resources(num_cpus=1, workers=2), Resources(num_cpus=2, workers=2)
    pipeline = Pipeline(
        "toy",
        [
            Stage("g00/train", random_draw, (), ("m0",), resources=Resources(num_cpus=1)),
            Stage("g00/label", random_draw, ("m0",), ("a",), resources=small, parallelism=Parallelism.SHARDS),
            Stage("g00/relabel", random_draw, ("a",), ("b",), resources=large, parallelism=Parallelism.SHARDS),
        ],
    )
    kept = kept_workers(pipeline, {"CPU": 6.0})
    held = sum(r.num_cpus * n for r, n in kept.items())
    assert all(held - r.num_cpus * kept[r] + r.num_cpus * r.workers <= 6.0 for r in kept)  # every call fits
    assert held + 1 <= 6.0  # and training beside every kept actor
    assert sum(kept.values()) >= 2  # yet some are kept


def test_only_sharded_stages_with_several_workers_use_a_pool():
    one = labeling_pipeline(Resources(num_cpus=1), Resources(num_cpus=1))
    data_parallel = labeling_pipeline(Resources(num_cpus=1), Resources(num_cpus=1, workers=2), Parallelism.DATA)
    assert not any(uses_actor_pool(stage) for stage in [*one.stages, *data_parallel.stages])
    assert kept_workers(one, {"CPU": 64.0}) == {} and kept_workers(data_parallel, {"CPU": 64.0}) == {}


def test_no_labeling_actors_are_kept_when_a_stage_is_pinned_to_nodes():
    """A kept actor could take the only CPU of the node a pinned stage needs; cluster totals cannot show it."""
    pinned = labeling_pipeline(Resources(num_cpus=1, custom={"node_b": 1}), Resources(num_cpus=1, workers=2))
    assert kept_workers(pinned, {"CPU": 64.0, "node_b": 10.0}) == {Resources(num_cpus=1, workers=2): 0}


class ShrinkingCluster:
    """What RayExecutor asks of `ray` when it refits: the cluster's resources, which a lost node lowers."""

    def __init__(self, cpus: float) -> None:
        self.cpus = cpus

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus}


class Pool:
    def __init__(self, resources: Resources, actors: int) -> None:
        self.resources, self.actors, self.stopped = resources, [object() for _ in range(actors)], False

    def includes(self, other) -> bool:
        return set(map(id, other.actors)) <= set(map(id, self.actors))

    def shutdown(self, keep=()) -> None:
        self.stopped = True


@pytest.mark.parametrize("in_use", [False, True])
def test_kept_actors_are_let_go_when_the_cluster_loses_a_node(in_use: bool):
    """Sized for 3 CPUs, two kept labeling actors would leave a 1-CPU training stage no CPU on the 2 left."""
    from orchestrator.engine.actor_pool import StageActors

    label = Resources(num_cpus=1, workers=3)  # its own task and 2 actors
    actors = KeptActors()  # no Ray: only the refit's bookkeeping is under test
    cluster, kept = ShrinkingCluster(3.0), Pool(label, 2)
    actors._pipeline = labeling_pipeline(Resources(num_cpus=1), label)
    actors._sized_for = {"CPU": 3.0}
    in_flight = {"ref": StageActors(kept=kept, extra=0, label="")} if in_use else {}
    actors._kept, actors._pools, actors._pool_of = {label: 2}, {label: kept}, in_flight
    actors._kept_let_go = False
    actors.refit(cluster.cluster_resources())
    assert actors._pools == {label: kept} and not kept.stopped  # as large as it was: nothing changes
    cluster.cpus = 2.0
    actors.refit(cluster.cluster_resources())
    assert actors._kept == {label: 0} and actors._pools == {}  # no longer kept ...
    assert kept.stopped is not in_use  # ... and stopped now, or when the stage using it ends (`release`)

    assert kept_message(2, 3) == "kept for the run"  # 3 workers: the stage's task and 2 actors
    assert "no room" in kept_message(0, 3)
    assert kept_message(1, 3).startswith("1 of 2 kept for the run")


def test_a_run_that_let_its_kept_actors_go_keeps_none_when_the_cluster_is_refit():
    """After a stalled run let its kept actors go (``_yield_kept_if_stalled``), a refit never keeps new ones."""

    label = Resources(num_cpus=1, workers=3)
    actors = KeptActors()  # no Ray: only the refit's bookkeeping is under test
    cluster = ShrinkingCluster(8.0)  # room to keep both actors, were the run still keeping
    actors._pipeline = labeling_pipeline(Resources(num_cpus=1), label)
    actors._sized_for, actors._kept, actors._pools, actors._pool_of = {"CPU": 9.0}, {label: 0}, {}, {}
    actors._kept_let_go = True
    actors.refit(cluster.cluster_resources())
    assert actors._kept == {label: 0} and actors._pools == {}
    actors._kept_let_go = False  # the same refit for a run still keeping: both actors fit in 8 CPUs
    actors._sized_for = {"CPU": 9.0}
    actors.refit(cluster.cluster_resources())
    assert actors._kept == {label: 2}


def test_a_sharded_stage_without_a_pool_is_refused(tmp_path):
    stage = Stage(
        "g00/label", random_draw, (), ("draw",), resources=Resources(workers=2), parallelism=Parallelism.SHARDS
    )
    with pytest.raises(ValueError, match="needs an actor pool"):
        run_on_ray(task(tmp_path, stage))


def test_a_ctrl_c_during_the_block_is_held_until_it_ends_then_stops_what_it_started() -> None:
    """Raised where it landed (a weakref callback of `import ray`, logging's at-fork hook as Ray forks), a
    Ctrl-C was dropped ("Exception ignored in") and the run went on, or hung on logging's lock."""
    import gc
    import os
    import signal
    import weakref

    from orchestrator.engine.signals import interrupts_kept

    class Started:
        pass

    stopped: list[str] = []
    finished: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts_kept(lambda: stopped.append("ray")):
        thing = Started()
        keep = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGINT))  # lands in the callback
        del thing
        gc.collect()
        assert keep() is None
        finished.append("the block")  # not cut off: the Ctrl-C waits for the end of the block
    assert finished == ["the block"] and stopped == ["ray"]
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts_kept(lambda: stopped.append("again")):
        pass
    assert stopped == ["ray"]  # no Ctrl-C, nothing stopped


def test_a_second_ctrl_c_during_the_block_raises_at_once() -> None:
    import os
    import signal

    from orchestrator.engine.signals import interrupts_kept

    reached: list[int] = []
    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        for press in range(3):
            os.kill(os.getpid(), signal.SIGINT)
            reached.append(press)
    assert reached == [0]  # the first is held, the second raises before the loop goes on


def test_a_held_ctrl_c_is_answered_at_once(capfd) -> None:
    """The terminal stayed silent until Ray's start ended: half a minute on a loaded machine."""
    import os
    import signal

    from orchestrator.engine.signals import interrupts_kept

    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        os.kill(os.getpid(), signal.SIGINT)
        said = capfd.readouterr().err  # before the block ends
    assert said == "\nrelay: stopping once Ray's start ends; press Ctrl-C again to stop now\n"


PORT_OCCUPIED = (
    "Failed to bind to 127.0.0.1:8265 because it's already occupied. You can use `ray start --dashboard-port ...`"
)


class DashboardDies:
    """What `ray.init` does when the dashboard it started is gone: a bare Exception naming the dashboard."""

    def __init__(self, message: str = "Failed to start the dashboard") -> None:
        self.calls: list[str] = []
        self.message = message

    def init(self, **kwargs) -> None:
        self.calls.append(f"init {kwargs.get('dashboard_port')}")
        raise Exception(self.message)  # Ray raises a bare Exception here

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_a_dashboard_stopped_by_the_ctrl_c_ends_the_start_as_interrupted_without_a_port_retry(caplog) -> None:
    """A Ctrl-C reaches Ray's processes too; the start then logged 'lost port 8265 to another process' and retried."""
    from orchestrator.engine.ray_session import _start_ray

    ray = DashboardDies()
    with pytest.raises(KeyboardInterrupt):
        _start_ray(ray, {"dashboard_port": 8265}, interrupted=[2])
    assert ray.calls == ["init 8265", "shutdown"]
    assert "lost port" not in caplog.text
    ray = DashboardDies(PORT_OCCUPIED)
    with pytest.raises(Exception, match="occupied"):  # no Ctrl-C: a lost port, retried once on another
        _start_ray(ray, {"dashboard_port": 8265})
    assert len(ray.calls) == 3 and ray.calls[1] == "shutdown" and "lost port 8265" in caplog.text


def test_a_dashboard_that_failed_for_another_reason_is_retried_without_blaming_the_port(caplog) -> None:
    """A dashboard too slow to start on a loaded machine was reported as a port lost to another process."""
    from orchestrator.engine.ray_session import _start_ray

    ray = DashboardDies("The last 20 lines of /tmp/ray/session_x/logs/dashboard.log (it contains the error ...)")
    with pytest.raises(Exception, match="dashboard"):
        _start_ray(ray, {"dashboard_port": 8265})
    assert len(ray.calls) == 3 and "did not start on port 8265" in caplog.text and "lost port" not in caplog.text


def test_the_retry_takes_the_next_free_port_not_one_the_os_may_hand_out_again(caplog) -> None:
    """The retry once asked the OS for a port; Ray's own processes, starting next, could be given the same one."""
    from orchestrator.engine.ray_session import _start_ray

    ray = DashboardDies(PORT_OCCUPIED)
    with pytest.raises(Exception, match="occupied"):
        _start_ray(ray, {"dashboard_port": 20000})
    retried = int(ray.calls[2].split()[1])
    low, _ = (int(edge) for edge in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert 20000 < retried < min(20000 + 100, low)


def test_the_dashboard_port_is_the_first_free_one_from_8265_up() -> None:
    """Two ports held in a row: the next one after them, never one from the OS's range for port 0."""
    import socket

    from orchestrator.engine import ray_session

    first = ray_session.dashboard_port(first=21000)
    with socket.socket() as held, socket.socket() as next_held:
        held.bind(("127.0.0.1", first))
        next_held.bind(("127.0.0.1", ray_session.dashboard_port(first=first)))
        second = next_held.getsockname()[1]
        chosen = ray_session.dashboard_port(first=first)
    assert chosen > second > first and chosen < first + ray_session.PORTS_TRIED
