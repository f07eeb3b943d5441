"""A stage worker no node can hold: `relay run --address` is told to go as a job that skips the check, `relay tune
--address` is not (a job would run the base config once, not the sweep) and is told to start a node that large."""

from __future__ import annotations

from orchestrator.cli.run.cluster_fit import oversized_worker_problems
from tests.unit.orchestrator.tune.test_per_node_concurrency import smoke_pipeline

TWO_ONE_CPU_NODES = [{"CPU": 1.0, "memory": 1e9, "node:10.0.0.2": 1.0}, {"CPU": 1.0, "memory": 1e9}]


def test_a_sweep_is_told_to_start_a_node_that_large_not_to_submit() -> None:
    (problem,) = oversized_worker_problems(TWO_ONE_CPU_NODES, smoke_pipeline(train_cpus=2.0), sweep=True)
    assert "one worker asks for 2 CPU, and no node of the cluster has that much (the largest has 1 CPU)" in problem
    assert "--skip-resource-check" not in problem
    assert problem.endswith(
        "; a sweep's trials run on the nodes the cluster has (`relay submit` would run one run of the base config, "
        "not the sweep): on an autoscaling cluster, start a node that large first (ray up with min_workers >= 1 for "
        "its node type, or scale the KubeRay worker group), then run `relay tune` again"
    )


def test_a_run_is_still_told_it_can_go_as_a_job() -> None:
    (problem,) = oversized_worker_problems(TWO_ONE_CPU_NODES, smoke_pipeline(train_cpus=2.0))
    assert problem.endswith("run it as a job: `relay submit CONFIG --address http://HOST:8265 --skip-resource-check`")


def test_workers_that_fit_a_node_are_no_problem() -> None:
    assert oversized_worker_problems(TWO_ONE_CPU_NODES, smoke_pipeline(train_cpus=1.0), sweep=True) == []
