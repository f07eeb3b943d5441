"""A stage waiting on a cluster that lost its nodes names them and says it starts once one rejoins.

A real multi-node Ray (``ray.cluster_utils``): a 0-CPU head and one 1-CPU worker node whose raylet
is killed. Before, a 1-CPU stage waiting there was told "No node has 1 CPU in all ...: it never
starts on these nodes. Lower the stage's resources", though it started at once when the operator
restarted the worker node; a retry submitted there was told "it will wait until an autoscaler adds
nodes ... Lower the stage's resources or add nodes".
"""

import logging
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.dag import Resources, Stage
from orchestrator.engine.ray_executor import RayExecutor

pytestmark = pytest.mark.integration

DEAD_WITHIN_S = 45.0  # a bound on waiting for the head to declare the killed node dead (never asserted on)
FAST_HEALTH_CHECKS = {  # the head declares a killed node dead in about 2 s instead of about 16 s
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def declared_dead(node_id: str) -> bool:
    """Whether ``ray.nodes()`` lists ``node_id`` as dead, waiting up to ``DEAD_WITHIN_S`` for it."""
    deadline = time.monotonic() + DEAD_WITHIN_S
    while time.monotonic() < deadline:
        if any(node["NodeID"] == node_id and not node["Alive"] for node in ray.nodes()):
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def worker_node_lost():
    """A 0-CPU head whose only worker node (1 CPU) was killed after the executor saw it; yields
    (the executor, the lost node's id, the head's address)."""
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS},
    )
    try:
        worker = cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, logging_level="ERROR")
        cluster.wait_for_nodes()
        executor = RayExecutor()  # joins the Ray above, and sees both nodes alive
        cluster.remove_node(worker, allow_graceful=False)  # SIGKILLs the worker node's raylet
        assert declared_dead(worker.node_id)
        yield executor, worker.node_id, cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_stage_a_lost_node_could_hold_starts_once_it_rejoins(worker_node_lost) -> None:
    executor, lost_id, head = worker_node_lost
    message = executor.waiting_now("g00/train (attempt 3)", Resources(num_cpus=1.0))
    assert "g00/train (attempt 3) has waited 60 s for a place: it asks for 1 CPU and 0 GPU a worker" in message
    assert "No live node has 1 CPU in all (the largest has 0 CPU), but the cluster lost 1 node(s): " in message
    assert f"{lost_id} at " in message and " (1 CPU); a lost node had 1 CPU." in message
    assert f"It starts once such a node rejoins: restart Ray on it (`ray start --address={head}`)." in message
    assert "never starts" not in message and "Lower the stage's resources" not in message


def test_a_stage_larger_than_any_node_the_cluster_had_never_starts(worker_node_lost) -> None:
    executor, lost_id, _ = worker_node_lost
    message = executor.waiting_now("g00/train", Resources(num_cpus=2.0))
    assert "No node has 2 CPU in all (the largest has 0 CPU): it never starts on these nodes." in message
    assert "Lower the stage's resources (e.g. resources.train.num_cpus" in message
    assert lost_id not in message and "rejoins" not in message


def train_stage(num_cpus: float) -> Stage:
    """A stage as the engine submits it; only its name and resources matter here (it is never run)."""
    return Stage("g00/train", lambda ctx, inputs, params: None, (), ("model",), resources=Resources(num_cpus=num_cpus))


def test_a_retry_submitted_after_the_loss_is_told_it_starts_once_a_lost_node_rejoins(worker_node_lost, caplog) -> None:
    """The submit-time warning, against the live cluster: before, "it will wait until an autoscaler adds nodes
    that have them. Lower the stage's resources or add nodes"."""
    executor, lost_id, head = worker_node_lost
    caplog.set_level(logging.WARNING, logger="orchestrator.engine.ray_executor")
    executor._warn_if_infeasible(train_stage(1.0), dict(ray.cluster_resources()))  # what submit logs
    warning = executor.infeasible_now(train_stage(1.0), dict(ray.cluster_resources()))
    logged = [record.getMessage() for record in caplog.records if record.name == "orchestrator.engine.ray_executor"]
    assert logged == [warning]
    assert warning is not None
    assert (
        "g00/train asks for 1 CPU (1 worker(s)) but the cluster has 0 CPU, and the cluster lost 1 node(s): " in warning
    )
    assert f"{lost_id} at " in warning and " (1 CPU); a lost node had 1 CPU." in warning
    assert f"It starts once such a node rejoins: restart Ray on it (`ray start --address={head}`)." in warning
    assert "autoscaler" not in warning and "Lower the stage's resources" not in warning


def test_a_stage_larger_than_the_lost_node_keeps_the_autoscaler_advice_at_submit(worker_node_lost) -> None:
    executor, lost_id, _ = worker_node_lost
    warning = executor.infeasible_now(train_stage(2.0), dict(ray.cluster_resources()))
    assert warning is not None and "asks for 2 CPU (1 worker(s)) but the cluster has 0 CPU; it will wait" in warning
    assert lost_id not in warning and "rejoins" not in warning
