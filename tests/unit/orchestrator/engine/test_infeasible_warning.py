"""What the Ray executor warns of a stage larger than the cluster: a wait only where the stage cannot start.

A labeling stage starts on its own task (it labels every shard there; its actors add speed where they
find room), so one whose workers do not all fit runs anyway: it was told it "will wait until an
autoscaler adds nodes", then finished seconds later.
"""

from __future__ import annotations

from orchestrator.dag import Parallelism, Resources, Stage
from orchestrator.engine.executors import infeasible_warning


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
