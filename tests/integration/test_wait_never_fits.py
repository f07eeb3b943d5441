"""On a real two-node Ray (two 1-CPU nodes in this process, ``ray.cluster_utils``) a 2-CPU worker is told it
never starts there: the executor reads each node's totals from Ray, as it reads what each has free."""

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.dag import Resources
from orchestrator.engine.executors import RayExecutor, waiting_message

pytestmark = pytest.mark.integration


@pytest.fixture
def two_one_cpu_nodes():
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_a_worker_larger_than_every_node_is_told_it_never_starts(two_one_cpu_nodes) -> None:
    executor = RayExecutor.__new__(RayExecutor)
    executor._ray = ray
    node_totals = executor._node_totals()
    assert node_totals is not None and sorted(node["CPU"] for node in node_totals) == [1.0, 1.0]
    free_per_node = executor._free_per_node()
    message = waiting_message(
        "g00/train",
        Resources(num_cpus=2.0),
        ray.available_resources(),
        ray.cluster_resources(),
        free_per_node,
        node_totals,
    )
    assert "No node has 2 CPU in all (the largest has 1 CPU)" in message
    assert "it never starts on these nodes" in message and "it starts when they free it" not in message
