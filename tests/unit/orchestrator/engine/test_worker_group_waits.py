"""Which data-parallel stages wait for their Ray Train worker group, from the bundles of this job's PENDING
placement groups (``ray_executor.waiting_worker_groups``): a waiting stage is told apart, a running one never
reads as waiting."""

from __future__ import annotations

from orchestrator.dag import Resources
from orchestrator.engine.ray_executor import group_shape, waiting_worker_groups, worker_group_shape

TWO_CPU_WORKERS = Resources(num_cpus=1, workers=2)
TWO_GPU_WORKERS = Resources(num_cpus=2, num_gpus=1, workers=2, custom=(("node_a", 0.5),))


def test_a_pending_group_of_the_stages_bundles_is_its_worker_group():
    as_ray_reports = group_shape([{"CPU": 1.0, "memory": 0.0}, {"CPU": 1.0}])  # amounts of 0 are no demand
    assert waiting_worker_groups({"g01/train": TWO_CPU_WORKERS}, [as_ray_reports]) == {"g01/train"}
    gpu_group = group_shape([{"node_a": 0.5, "GPU": 1.0, "CPU": 2.0}] * 2)
    assert worker_group_shape(TWO_GPU_WORKERS) == gpu_group
    assert waiting_worker_groups({"g01/train": TWO_GPU_WORKERS}, [gpu_group]) == {"g01/train"}


def test_a_group_of_another_shape_is_not_the_stages():
    three_workers = worker_group_shape(Resources(num_cpus=1, workers=3))
    assert waiting_worker_groups({"g01/train": TWO_CPU_WORKERS}, [three_workers]) == set()
    assert waiting_worker_groups({"g01/train": TWO_CPU_WORKERS}, []) == set()


def test_stages_of_one_shape_wait_only_when_as_many_groups_of_it_wait():
    """Two 2-worker stages in flight and one pending group: one of them runs, and which is unknown."""
    in_flight = {"g01/train": TWO_CPU_WORKERS, "g01/finetune": TWO_CPU_WORKERS, "g01/big": TWO_GPU_WORKERS}
    one = [worker_group_shape(TWO_CPU_WORKERS), worker_group_shape(TWO_GPU_WORKERS)]
    assert waiting_worker_groups(in_flight, one) == {"g01/big"}
    both = [*one, worker_group_shape(TWO_CPU_WORKERS)]
    assert waiting_worker_groups(in_flight, both) == {"g01/train", "g01/finetune", "g01/big"}
