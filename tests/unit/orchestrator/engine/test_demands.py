"""One shortfall for the driver's warning and `relay submit`'s refusal: float sums are no shortfall.

The driver's copy compared exactly, so 3 workers of 0.1 CPU (0.30000000000000004) on a 0.3-CPU cluster
were warned that they "will wait until an autoscaler adds nodes", while `relay submit`'s copy, with a
tolerance, let the same pipeline through.
"""

from __future__ import annotations

from orchestrator.dag import Resources, Stage
from orchestrator.engine.demands import amounts_text, resource_key, shortfall
from orchestrator.engine.placement_warnings import infeasible_warning


def stage(resources: Resources) -> Stage:
    return Stage("g00/train", lambda ctx, inputs, params: None, (), ("x",), resources=resources)


def test_a_sum_of_fractional_cpus_that_the_cluster_holds_is_no_shortfall() -> None:
    assert 0.1 * 3 > 0.3 and 0.1 + 0.2 > 0.3  # what an exact comparison got wrong
    assert shortfall({"CPU": 0.1 * 3}, {"CPU": 0.3}) == {}
    assert shortfall({"CPU": 0.1 + 0.2}, {"CPU": 0.3}) == {}


def test_the_driver_does_not_warn_of_workers_whose_fractional_cpus_add_up_to_the_cluster() -> None:
    assert infeasible_warning(stage(Resources(num_cpus=0.1, workers=3)), {"CPU": 0.3}) is None


def test_what_the_cluster_lacks_is_still_a_shortfall() -> None:
    assert shortfall({"CPU": 2.0, "GPU": 0.0, "node_a": 1.0}, {"CPU": 1.0}) == {"CPU": 2.0, "node_a": 1.0}
    warning = infeasible_warning(stage(Resources(num_cpus=0.2, workers=2)), {"CPU": 0.3})
    assert warning is not None and "asks for 0.4 CPU (2 worker(s)) but the cluster has 0.3 CPU" in warning


def test_names_are_matched_as_ray_writes_them_unless_the_report_normalised_them() -> None:
    """Ray's scheduler matches custom resource names exactly; the dashboard's report camel-cases them."""
    assert shortfall({"node_a": 1.0}, {"nodeA": 1.0}) == {"node_a": 1.0}
    report = {resource_key("nodeA"): 1.0, resource_key("CPU"): 4.0}
    assert shortfall({"node_a": 1.0, "CPU": 4.0}, report, key=resource_key) == {}


def test_amounts_read_as_a_message_says_them() -> None:
    assert amounts_text({"CPU": 2.0, "GPU": 0.5}) == "2 CPU, 0.5 GPU"
