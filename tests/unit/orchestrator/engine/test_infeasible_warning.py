"""What the Ray executor warns of a stage larger than the cluster: a wait only where the stage cannot start.

A labeling stage starts on its own task (it labels every shard there; its actors add speed where they
find room), so one whose workers do not all fit runs anyway: it was told it "will wait until an
autoscaler adds nodes", then finished seconds later.
"""

from __future__ import annotations

from orchestrator.dag import Parallelism, Resources, Stage
from orchestrator.engine.fit import LostNode
from orchestrator.engine.placement_warnings import infeasible_warning


def stage(resources: Resources, parallelism: Parallelism = Parallelism.DATA) -> Stage:
    return Stage("g00/pseudo_label", lambda ctx, inputs, params: None, (), ("x",), resources=resources,
                 parallelism=parallelism)  # fmt: skip


def test_a_labeling_stage_whose_task_fits_is_not_said_to_wait() -> None:
    warning = infeasible_warning(stage(Resources(num_cpus=1, workers=2), Parallelism.SHARDS), {"CPU": 1.0})
    assert warning is not None and "will wait" not in warning, warning
    assert "its 2 workers ask for 2 CPU but the cluster has 1 CPU" in warning
    assert "runs on its own task" in warning


def test_a_labeling_stage_whose_task_does_not_fit_waits() -> None:
    warning = infeasible_warning(stage(Resources(num_cpus=2, workers=2), Parallelism.SHARDS), {"CPU": 1.0})
    assert warning is not None and "asks for 2 CPU (1 worker(s)) but the cluster has 1 CPU; it will wait" in warning


def test_a_data_parallel_stage_needs_all_its_workers_to_start() -> None:
    warning = infeasible_warning(stage(Resources(num_cpus=1, workers=2)), {"CPU": 1.0})
    assert warning is not None and "asks for 2 CPU (2 worker(s))" in warning and "will wait" in warning


def test_a_stage_that_fits_is_not_warned_of() -> None:
    assert infeasible_warning(stage(Resources(num_cpus=1, workers=2), Parallelism.SHARDS), {"CPU": 2.0}) is None


def test_a_stage_a_lost_node_could_hold_is_said_to_start_once_it_rejoins() -> None:
    """A 1-CPU retry on a 0-CPU head whose worker was killed was told to wait for an autoscaler and lower its
    resources; restarting the worker started it."""
    lost = [LostNode("w1", "10.0.0.2", {"CPU": 1.0, "memory": 1e9})]
    warning = infeasible_warning(
        stage(Resources(num_cpus=1)), {"memory": 1e9}, lost=lost, rejoin_address="10.0.0.1:6379"
    )
    assert (
        warning is not None
        and "g00/pseudo_label asks for 1 CPU (1 worker(s)) but the cluster has 0 CPU, and " in warning
    )
    assert "the cluster lost 1 node(s): w1 at 10.0.0.2 (1 CPU); a lost node had 1 CPU." in warning
    assert "It starts once such a node rejoins: restart Ray on it (`ray start --address=10.0.0.1:6379`)." in warning
    assert "autoscaler" not in warning and "Lower" not in warning


def test_lost_nodes_too_small_for_one_worker_keep_the_autoscaler_advice() -> None:
    lost = [LostNode("w1", "10.0.0.2", {"CPU": 1.0})]
    warning = infeasible_warning(stage(Resources(num_cpus=2)), {}, lost=lost)
    assert warning is not None and "asks for 2 CPU (1 worker(s)) but the cluster has 0 CPU; it will wait" in warning
    assert "Lower the stage's resources or add nodes." in warning and "w1" not in warning


def test_workers_that_need_more_than_the_lost_nodes_had_keep_the_autoscaler_advice() -> None:
    one = [LostNode("w1", "10.0.0.2", {"CPU": 1.0})]
    warning = infeasible_warning(stage(Resources(num_cpus=1, workers=2)), {}, lost=one)
    assert warning is not None and "it will wait until an autoscaler" in warning and "w1" not in warning
    two = [*one, LostNode("w2", "10.0.0.3", {"CPU": 1.0})]
    warning = infeasible_warning(stage(Resources(num_cpus=1, workers=2)), {}, lost=two)
    assert warning is not None and "asks for 2 CPU (2 worker(s)) but the cluster has 0 CPU, and " in warning
    assert "lost 2 node(s): w1 at 10.0.0.2 (1 CPU), w2 at 10.0.0.3 (1 CPU)" in warning
    assert "`ray start --address=<head address>`" in warning and "autoscaler" not in warning
