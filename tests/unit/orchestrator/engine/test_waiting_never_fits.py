"""A stage waiting for a place on nodes none of which could ever hold one worker says so, with the fix.

Two 1-CPU workers and a 2-CPU stage worker: the message read "the cluster has 1.9 CPU ... free ... it
starts when they free it" every minute, and the stage never started.
"""

from __future__ import annotations

from orchestrator.dag import Resources
from orchestrator.engine.placement_warnings import waiting_message

TWO_CPU = Resources(num_cpus=2.0)
TWO_ONE_CPU_NODES = [{"CPU": 1.0, "memory": 1e9, "node:10.0.0.2": 1.0}, {"CPU": 1.0, "memory": 1e9}]


def test_no_node_large_enough_says_it_never_starts() -> None:
    message = waiting_message(
        "g00/train", TWO_CPU, {"CPU": 1.9}, {"CPU": 2.0}, [{"CPU": 0.9}, {"CPU": 1.0}], TWO_ONE_CPU_NODES
    )
    assert (
        "g00/train has waited 60 s for a place: it asks for 2 CPU and 0 GPU a worker, the cluster has 1.9 CPU and "
        "0 GPU free in all, at most 1 CPU on one node; a worker runs on one node. No node has 2 CPU in all (the "
        "largest has 1 CPU): it never starts on these nodes. Lower the stage's resources (e.g. "
        "resources.train.num_cpus" in message
    )
    assert "it starts when they free it" not in message


def test_a_node_large_enough_but_busy_waits_for_it() -> None:
    message = waiting_message(
        "g00/train (attempt 2)", TWO_CPU, {"CPU": 1.5}, {"CPU": 4.0}, [{"CPU": 1.0}, {"CPU": 0.5}], [{"CPU": 2.0}] * 2
    )
    assert "free in all, at most 1 CPU on one node; a worker runs on one node. Other work holds the rest" in message
    assert "it starts when they free it" in message and "never starts" not in message


def test_gpus_no_node_has() -> None:
    asks = Resources(num_cpus=1.0, num_gpus=2.0)
    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    message = waiting_message("train", asks, {"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}, nodes, nodes)
    assert "No node has 1 CPU, 2 GPU in all (the largest has 8 CPU, 1 GPU)" in message


def test_nodes_unknown_keep_the_old_advice() -> None:
    message = waiting_message("train", TWO_CPU, {"CPU": 1.0}, {"CPU": 1.0}, None, None)
    assert "the cluster has 1 CPU and 0 GPU free. Other work holds the rest" in message
