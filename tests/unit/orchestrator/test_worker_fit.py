"""Each stage worker must fit on one node: ``oversized_workers`` compares it with every node, not the cluster's sum."""

from orchestrator import jobs

ONE_CPU_NODES = [{"cpu": 1.0, "memory": 1e9}, {"cpu": 1.0, "memory": 1e9}]


def test_a_worker_larger_than_every_node_is_named_with_the_largest_node() -> None:
    problems = jobs.oversized_workers({"g00/train": {"CPU": 2.0}, "g01/train": {"CPU": 2.0}}, ONE_CPU_NODES)
    assert len(problems) == 1
    assert "g00/train, g01/train: one worker asks for 2 CPU" in problems[0]
    assert "the largest has 1 CPU" in problems[0] and "resources.train.num_cpus" in problems[0]


def test_a_worker_fits_when_one_node_holds_all_it_asks() -> None:
    nodes = [{"cpu": 4.0}, {"cpu": 1.0, "gpu": 1.0, "nodea": 1.0}]
    assert (
        jobs.oversized_workers({"train": {"CPU": 1.0, "GPU": 1.0, "node_a": 1.0}, "split": {"CPU": 4.0}}, nodes) == []
    )
    assert jobs.oversized_workers({"train": {"CPU": 2.0, "GPU": 1.0}}, nodes) != []  # CPUs here, the GPU there
