"""How many trials run at once, counted per node: a stage worker never spans nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_yaml, validate_config
from orchestrator.engine.fit import live_node_resources, trials_fitting_nodes
from orchestrator.tune.plan import fit_concurrency
from pipelines.builders import crest

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def smoke_pipeline(train_gpus: float = 0.0, train_cpus: float = 1.0):
    data = load_yaml(SMOKE) | {"resources": {"train": {"num_gpus": train_gpus, "num_cpus": train_cpus}}}
    return crest.build(validate_config(crest.CrestConfig, data))


def test_three_one_cpu_nodes_run_one_trial_at_a_time() -> None:
    """3 CPUs in all fit two trials of 1-CPU stages by the total, but drivers on two nodes leave one node."""
    nodes = [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert fit_concurrency({"CPU": 3.0}, smoke_pipeline(), 0.1, None, trials=4, nodes=nodes) == 1


def test_larger_nodes_count_whole_workers_beside_every_driver() -> None:
    """4 nodes of 16 CPUs, 4-CPU training: the total says 15; with a driver on every node, each holds 3."""
    pipeline = smoke_pipeline(train_cpus=4.0)
    nodes = [{"CPU": 16.0}] * 4
    assert fit_concurrency({"CPU": 64.0}, pipeline, 0.1, None, trials=20, nodes=nodes) == 12


def test_gpus_count_on_the_node_that_has_them() -> None:
    """A GPU on a node without CPU room for its stage is no place for a trial."""
    nodes = [{"CPU": 8.0}, {"CPU": 1.0, "GPU": 2.0}]
    assert fit_concurrency({"CPU": 9.0, "GPU": 2.0}, smoke_pipeline(1.0), 0.1, None, trials=10, nodes=nodes) == 1


@pytest.mark.parametrize(
    ("cpus", "gpus", "stage_gpus", "requested", "expected"),
    [
        (2, 0, 0.0, None, 1),
        (8, 0, 0.0, None, 7),
        (8, 0, 0.0, 2, 2),
        (2, 0, 0.0, 5, 1),
        (16, 2, 1.0, None, 2),
        (11, 0, 0.0, None, 10),  # 11 / 1.1 exactly: the boundary the total's count had
        (1, 0, 0.0, None, 1),  # nothing fits beside the driver: still one trial (it waits, as before)
    ],
)
def test_one_node_keeps_the_totals_count(
    cpus: int, gpus: int, stage_gpus: float, requested: int | None, expected: int
) -> None:
    """A local Ray is one node: the per-node count is the old CPU / (stage + driver), given as nodes or not."""
    pipeline = smoke_pipeline(stage_gpus)
    node = {"CPU": float(cpus), "GPU": float(gpus)}
    assert fit_concurrency(node, pipeline, 0.1, requested, trials=10, nodes=[node]) == expected
    assert fit_concurrency(node, pipeline, 0.1, requested, trials=10, nodes=[]) == expected


def test_dead_nodes_are_left_out() -> None:
    """``ray.nodes()`` keeps a lost node's entry (Alive False): its CPUs are no place for a trial."""
    nodes = [
        {"Alive": True, "Resources": {"CPU": 2.2}},
        {"Alive": False, "Resources": {"CPU": 2.2}},
    ]
    assert live_node_resources(nodes) == [{"CPU": 2.2}]
    assert trials_fitting_nodes(live_node_resources(nodes), smoke_pipeline(), 0.1) == 2
