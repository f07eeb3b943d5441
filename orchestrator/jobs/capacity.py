"""What a cluster can hold, read from its dashboard: its totals and its nodes, against what a pipeline asks.

A stage that asks for more than the cluster has, or a worker no single node can hold, waits
forever on the cluster ("No available node types can fulfill resource request"); `relay submit`
refuses it before the upload instead. The dashboard's report lags nodes that joined seconds ago,
so a shortfall is read again for up to ``NODES_REPORT_WAIT_S`` before it is said.

Apart from ``submit`` because it answers one question, whether the pipeline fits, from the
dashboard's reports; ``orchestrator.cli.run.cluster_fit`` asks ``oversized_workers`` of a GCS's nodes too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from orchestrator.engine.demands import amounts_text, resource_key, shortfall
from orchestrator.jobs.connection import InsufficientResourcesError, auth_headers, dashboard_json

T = TypeVar("T")
logger = logging.getLogger(__name__)
# How long a resource check waits for the cluster's report to show what a stage needs: right after `ray start`
# the dashboard's report lists no node for a few seconds, and right after more nodes join it lists only some
# (a submit then said a cluster of 2 CPU workers and a 0-CPU head had 0 CPU). A cluster that is short for
# good is said so after this wait.
NODES_REPORT_WAIT_S = 15


def _once_reported(read: Callable[[], T | None], lacking: Callable[[T], bool]) -> T | None:
    """``read()`` again each second, up to NODES_REPORT_WAIT_S, while what it reports is ``lacking``; None if unread.

    Why: the dashboard's report lags the cluster: nodes that joined seconds ago are not in it yet.
    """
    value = read()
    waited = 0
    while value is not None and lacking(value) and waited < NODES_REPORT_WAIT_S:
        time.sleep(1.0)
        waited += 1
        value = read()
    return value


def cluster_totals(address: str) -> dict[str, float] | None:
    """Total of every resource the cluster reports now (CPU, GPU, custom), from /api/cluster_status; None if
    it cannot say.

    ``ray.cluster_resources()`` needs a driver connection, which a Jobs client
    does not have; the dashboard's autoscaler report carries the same totals.
    """
    body = dashboard_json(address, "/api/cluster_status", auth_headers())  # keys as resource_key makes them
    status = ((body or {}).get("data") or {}).get("clusterStatus") or {}
    report = status.get("loadMetricsReport") or status.get("load_metrics_report")
    if not isinstance(report, dict) or not isinstance(report.get("usage"), dict):
        return None
    return {resource_key(key): float(used_total[1]) for key, used_total in report["usage"].items() if used_total}


def check_cluster_resources(address: str, needs: Mapping[str, float]) -> None:
    """Fail now when the cluster has less of a resource than one stage needs to start, instead of a job
    whose stage waits forever (``needs``: resource -> amount, e.g. from ``orchestrator.engine.fit.cluster_needs``)."""
    needs = {key: amount for key, amount in needs.items() if amount > 0}
    if not needs:
        return
    totals = _once_reported(
        lambda: cluster_totals(address), lambda totals: bool(shortfall(needs, totals, key=resource_key))
    )
    if totals is None:
        logger.warning("could not read the resources of %s (/api/cluster_status); not checked", address)
        return
    short = shortfall(needs, totals, key=resource_key)
    if not short:
        return
    has = ", ".join(f"{totals.get(resource_key(key), 0.0):g} {key}" for key in short)
    asks = ", ".join(f"{amount:g} {key}" for key, amount in short.items())
    fix = (
        "start GPU workers (ray up with min_workers >= 1 for the GPU node type, or scale the KubeRay GPU "
        "worker group), ask for fewer GPUs, "
        if "GPU" in short
        else "add nodes that have them (`ray start --num-cpus N --resources '{...}'`), lower the stages' resources, "
    )
    raise InsufficientResourcesError(
        f"the Ray cluster at {address} has {has}, the pipeline asks for {asks} at once: {fix}"
        "or skip this check (--skip-resource-check) for an autoscaling cluster that starts nodes on demand"
    )


def worker_requests(stages: Iterable[Any]) -> dict[str, dict[str, float]]:
    """Stage name -> what one of its workers asks of each resource (CPU, GPU, custom; amounts above 0).

    A worker is Ray's unit of placement (a task, a Ray Train worker, a labeling actor): it runs on
    one node, so it must fit on one, whatever the cluster has in total.
    """
    requests = {}
    for stage in stages:
        resources = stage.resources
        asked = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, **dict(resources.custom)}
        requests[stage.name] = {key: float(amount) for key, amount in asked.items() if amount > 0}
    return requests


def node_resources(address: str) -> list[dict[str, float]] | None:
    """The total resources of each alive node (the state API behind `ray list nodes`), or None if it cannot say."""
    body = dashboard_json(address, "/api/v0/nodes?limit=10000&detail=1", auth_headers())
    result = ((body or {}).get("data") or {}).get("result") or {}
    rows = result.get("result") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return None
    return [
        {resource_key(key): float(amount) for key, amount in (row.get("resources_total") or {}).items()}
        for row in rows
        if isinstance(row, dict) and row.get("state") == "ALIVE"
    ]


def largest_node(nodes: list[Mapping[str, float]], keys: Iterable[str]) -> dict[str, float]:
    """The most any one node has of each of ``keys`` (resource names as a config writes them)."""
    return {key: max((node.get(resource_key(key), 0.0) for node in nodes), default=0.0) for key in keys}


def oversized_workers(requests: Mapping[str, Mapping[str, float]], nodes: list[Mapping[str, float]]) -> list[str]:
    """One line per request no single node can hold, naming its stages, what a worker asks and the largest node.

    Why: Ray places each worker on one node, so two 1-CPU nodes cannot run a worker asking for 2
    CPUs; a check against the cluster's totals passed it and the job waited forever ("No
    available node types can fulfill resource request").
    """
    nodes = [
        {resource_key(key): amount for key, amount in node.items()} for node in nodes
    ]  # as Ray or a report names them
    stages: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for name, asked in requests.items():
        if asked and all(shortfall(asked, node, key=resource_key) for node in nodes):
            stages.setdefault(tuple(sorted(asked.items())), []).append(name)
    problems = []
    for asked, names in stages.items():
        largest = largest_node(nodes, dict(asked))
        role = names[0].rsplit("/", 1)[-1]
        problems.append(
            f"{', '.join(names)}: one worker asks for {amounts_text(dict(asked))}, and no node of the cluster has that "
            f"much (the largest has {amounts_text(largest)}); a worker runs on one node: lower the stage's resources "
            f"(e.g. resources.{role}.num_cpus; more workers share the work), or add a node that large "
            "(`ray start --num-cpus N --num-gpus N`)"
        )
    return problems


def check_workers_fit(address: str, requests: Mapping[str, Mapping[str, float]]) -> None:
    """Refuse (exit 2) a pipeline one of whose workers no node of the cluster can hold (``oversized_workers``).

    Waits, like ``check_cluster_resources``, for a report that lists nodes that joined seconds ago.
    """
    if not any(requests.values()):
        return
    nodes = _once_reported(lambda: node_resources(address), lambda nodes: bool(oversized_workers(requests, nodes)))
    if nodes is None:
        logger.warning("could not read the nodes of %s (/api/v0/nodes); not checked that each worker fits one", address)
        return
    problems = oversized_workers(requests, nodes)
    if problems:
        raise InsufficientResourcesError(
            f"the Ray cluster at {address} has no node large enough for "
            + "; ".join(problems)
            + "; or skip this check (--skip-resource-check) for an autoscaling cluster that starts larger nodes"
        )
