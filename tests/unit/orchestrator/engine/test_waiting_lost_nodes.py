"""Which dead nodes of ``ray.nodes()`` a waiting stage's message names, and when it still says it never starts."""

from __future__ import annotations

from orchestrator.dag import Resources
from orchestrator.engine.fit import LostNode, live_nodes_by_id, lost_nodes
from orchestrator.engine.placement_warnings import waiting_message

ALIVE = {"NodeID": "head", "Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"memory": 1e9}}
KILLED = {"NodeID": "w1", "Alive": False, "NodeManagerAddress": "10.0.0.2", "Resources": {}}  # Ray 2.x keeps none
LONG_DEAD = {"NodeID": "old", "Alive": False, "NodeManagerAddress": "10.0.0.9", "Resources": {}}


def test_a_dead_node_has_the_resources_it_was_seen_alive_with() -> None:
    seen = live_nodes_by_id([ALIVE, {**KILLED, "Alive": True, "Resources": {"CPU": 1.0}}])
    assert seen == {"head": {"memory": 1e9}, "w1": {"CPU": 1.0}}
    assert lost_nodes([ALIVE, KILLED, LONG_DEAD], seen) == [LostNode("w1", "10.0.0.2", {"CPU": 1.0})]


def test_a_dead_entry_that_keeps_its_resources_counts_unseen() -> None:
    kept = {**LONG_DEAD, "Resources": {"CPU": 4.0}}
    assert lost_nodes([kept], {}) == [LostNode("old", "10.0.0.9", {"CPU": 4.0})]


def test_lost_nodes_too_small_keep_the_never_starts_advice() -> None:
    lost = [LostNode("w1", "10.0.0.2", {"CPU": 1.0})]
    message = waiting_message("g00/train", Resources(num_cpus=2.0), {}, {"CPU": 0.0}, [{}], [{}], lost=lost)
    assert "No node has 2 CPU in all (the largest has 0 CPU): it never starts on these nodes." in message
    assert "w1" not in message


def test_without_the_head_address_the_rejoin_command_says_where_it_goes() -> None:
    lost = [LostNode("w1", "10.0.0.2", {"CPU": 1.0, "GPU": 1.0})]
    asks = Resources(num_cpus=1.0, num_gpus=1.0)
    message = waiting_message("g00/train", asks, {}, {"CPU": 0.0}, [{}], [{"CPU": 0.0}], lost=lost)
    assert "but the cluster lost 1 node(s): w1 at 10.0.0.2 (1 CPU, 1 GPU); a lost node had 1 CPU, 1 GPU." in message
    assert "(`ray start --address=<head address>`)" in message and "never starts" not in message
