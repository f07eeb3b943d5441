"""Room counted per node on a real multi-node Ray (three 1-CPU nodes in this process, ``ray.cluster_utils``).

Before, a sweep counted the cluster's total (3 CPUs: two trials of 1-CPU stages at once), yet
its 0.1-CPU drivers on two nodes left whole CPUs on the third only; a stage waiting for a
place was told "1.8 CPU free" where no node had 1 CPU free; and a 2-CPU worker on 1-CPU nodes was
told it "starts when they free it", though no node could ever hold it.
"""

import time

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.config import load_yaml, validate_config
from orchestrator.dag import Resources
from orchestrator.engine.placement_warnings import split_free_note, waiting_message
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.tune.plan import fit_concurrency
from pipelines.builders import crest
from tests.unit.orchestrator.tune.test_per_node_concurrency import SMOKE

pytestmark = pytest.mark.integration

REPORT_WITHIN_S = 30.0  # a bound on waiting for the nodes' reports (never asserted on)


@ray.remote(num_cpus=0.1)
class Driver:
    def ready(self) -> bool:
        return True


def driver_on(node_id: str, tries: int = 3) -> ray.actor.ActorHandle:
    """A started 0.1-CPU actor pinned to ``node_id``; one that Ray cancels before it starts is asked for again.

    Ray itself failed this setup once in CI (a fresh node's actor "cancelled before it started running",
    the GCS's socket to it closed); no Relay code runs here, so the placement is retried, not the test.
    """
    for attempt in range(tries):
        driver = Driver.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
        try:
            ray.get(driver.ready.remote())
            return driver
        except ray.exceptions.RayActorError as exc:
            if attempt == tries - 1:  # say what Ray knows of the node, so that the next failure can be told apart
                node = next((each for each in ray.nodes() if each["NodeID"] == node_id), {})
                said = {key: node.get(key) for key in ("Alive", "DeathReason", "DeathReasonMessage", "Resources")}
                raise AssertionError(f"no actor started on node {node_id} in {tries} tries; Ray says {said}") from exc
    raise AssertionError("unreachable")


def reported_with_drivers(executor: RayExecutor) -> list[dict[str, float]] | None:
    """What each node has free, once every node's report counts its driver (reports lag placement a little)."""
    deadline = time.monotonic() + REPORT_WITHIN_S
    free_per_node = executor._free_per_node()
    while time.monotonic() < deadline and any(node.get("CPU", 0.0) > 0.95 for node in free_per_node or []):
        time.sleep(0.5)
        free_per_node = executor._free_per_node()
    return free_per_node


@pytest.fixture
def three_one_cpu_nodes():
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_a_sweep_counts_trials_per_node_and_the_wait_names_one_node(three_one_cpu_nodes) -> None:
    pipeline = crest.build(validate_config(crest.CrestConfig, load_yaml(SMOKE)))
    assert ray.cluster_resources()["CPU"] == 3.0
    assert fit_concurrency(ray.cluster_resources(), pipeline, 0.1, None, trials=4) == 1

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    drivers = [driver_on(node) for node in nodes]  # held: an actor whose handle goes is killed
    assert len(drivers) == 3
    executor = RayExecutor.__new__(RayExecutor)
    executor._ray = ray
    free_per_node = reported_with_drivers(executor)
    assert free_per_node is not None and len(free_per_node) == 3
    free = {"CPU": sum(node.get("CPU", 0.0) for node in free_per_node)}
    note = split_free_note(Resources(num_cpus=1.0), free, free_per_node)
    assert note == " in all, at most 0.9 CPU on one node; a worker runs on one node"


def test_a_worker_larger_than_every_node_is_told_it_never_starts(three_one_cpu_nodes) -> None:
    """The executor reads each node's totals from Ray, as it reads what each has free."""
    executor = RayExecutor.__new__(RayExecutor)
    executor._ray = ray
    node_totals = executor._node_totals()
    assert node_totals is not None and sorted(node["CPU"] for node in node_totals) == [1.0, 1.0, 1.0]
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
