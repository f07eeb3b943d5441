"""What a stage asks of a cluster's resources that the cluster has less of, and how the amounts are written.

Both the driver's warning (``placement_warnings.infeasible_warning``, against ``ray.cluster_resources()``) and
`relay submit`'s refusal (``jobs.capacity``, against the dashboard's report) ask this; each had its
own answer, and the driver's compared amounts exactly: 3 workers of 0.1 CPU asked of a 0.3-CPU
cluster read as short of it (0.1 * 3 is 0.30000000000000004). One answer here, with a tolerance for float sums;
names are looked up as Ray writes them, or as ``resource_key`` makes them for the report, which
camel-cases them (``node_a`` arrives as ``nodeA``). Standard library only: `relay submit` runs it
without Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

TOLERANCE = 1e-9  # sums and multiples of fractional amounts (0.1 * 3) miss the exact total by far less than this


def resource_key(name: str) -> str:
    """A resource name as the dashboard's report and a config both name it: the report camel-cases keys
    (`node_a` arrives as `nodeA`), so both are compared without underscores or case."""
    return name.replace("_", "").lower()


def as_written(name: str) -> str:
    """A resource name as it is: Ray's scheduler matches the names of ``ray.cluster_resources()`` exactly."""
    return name


def shortfall(
    needs: Mapping[str, float], totals: Mapping[str, float], key: Callable[[str], str] = as_written
) -> dict[str, float]:
    """The resources of ``needs`` (name -> amount asked) that ``totals`` has less of, beyond float error.

    ``key`` is how a name of ``needs`` is looked up in ``totals``: as written against Ray's own totals,
    ``resource_key`` against the dashboard's report (whose names it has already made so).
    """
    return {name: amount for name, amount in needs.items() if amount > totals.get(key(name), 0.0) + TOLERANCE}


def amounts_text(by_name: Mapping[str, float]) -> str:
    """``{"CPU": 2, "GPU": 1}`` as ``2 CPU, 1 GPU``, for a message."""
    return ", ".join(f"{amount:g} {name}" for name, amount in by_name.items())
