"""The "has waited N s for a place" warning names the most one node has free when the total would fit."""

from __future__ import annotations

import pytest

from orchestrator.dag import Resources
from orchestrator.engine.placement_warnings import split_free_note, waiting_message

ONE_CPU = Resources(num_cpus=1.0)


def test_split_free_names_the_largest_on_one_node() -> None:
    free_per_node = [{"CPU": 0.9}, {"CPU": 0.9}]
    note = split_free_note(ONE_CPU, {"CPU": 1.8}, free_per_node)
    assert note == " in all, at most 0.9 CPU on one node; a worker runs on one node"


@pytest.mark.parametrize(
    ("free", "free_per_node"),
    [
        ({"CPU": 1.8}, [{"CPU": 1.0}, {"CPU": 0.8}]),  # one node fits: the total tells no lie
        ({"CPU": 0.5}, [{"CPU": 0.5}]),  # the total does not fit either: nothing to add
        ({"CPU": 1.8}, None),  # this Ray cannot say per node
    ],
)
def test_no_note_where_the_total_is_not_misleading(free: dict[str, float], free_per_node) -> None:
    assert split_free_note(ONE_CPU, free, free_per_node) == ""


def test_gpus_split_over_nodes_are_named_too() -> None:
    asks = Resources(num_cpus=1.0, num_gpus=2.0)
    note = split_free_note(asks, {"CPU": 8.0, "GPU": 2.0}, [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}])
    assert note == " in all, at most 1 GPU on one node; a worker runs on one node"


def test_warning_says_it() -> None:
    message = waiting_message("g00/train", ONE_CPU, {"CPU": 1.8}, {"CPU": 3.0}, [{"CPU": 0.9}, {"CPU": 0.9}])
    assert (
        "g00/train has waited 60 s for a place: it asks for 1 CPU and 0 GPU a worker, the cluster has 1.8 CPU and "
        "0 GPU free in all, at most 0.9 CPU on one node; a worker runs on one node." in message
    )
