"""Whether every stage of a pipeline can ever start on the local Ray instance a run starts for itself.

A local instance never grows: a stage asking for more CPUs than it has, a GPU on a machine
without one, or a custom resource nobody gave it waits forever (Ray's autoscaler prints
"No available node types can fulfill" every half minute). So ``relay run`` refuses such a
config before it writes anything. A cluster (``--address``, ``run.ray_address``) may add nodes
and is not checked here.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.dag import Parallelism, Pipeline, Stage

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def uses_actor_pool(stage: Stage) -> bool:
    """A sharded stage with workers > 1 maps its shards on its own task and an actor pool (the executor provides it)."""
    return stage.resources.workers > 1 and stage.parallelism is Parallelism.SHARDS


def workers_to_start(stage: Stage) -> int:
    """The workers a stage must hold at once to start: all of a data-parallel stage's; a sharded stage's own task."""
    return 1 if uses_actor_pool(stage) else stage.resources.workers


def stage_cpus_to_start(stage: Stage) -> float:
    return stage.resources.num_cpus * workers_to_start(stage)


def stage_gpus_to_start(stage: Stage) -> float:
    return stage.resources.num_gpus * workers_to_start(stage)


def cluster_needs(pipeline: Pipeline) -> dict[str, float]:
    """What the hungriest stage needs of each resource to start (CPU, custom ones), for ``relay submit``'s check
    against a cluster's totals; GPUs are counted by the caller (``--num-gpus`` may override them)."""
    needs: dict[str, float] = {}
    for stage in pipeline.stages:
        asked = {"CPU": stage_cpus_to_start(stage)}
        asked.update({name: amount * workers_to_start(stage) for name, amount in stage.resources.custom})
        for key, amount in asked.items():
            needs[key] = max(needs.get(key, 0.0), amount)
    return needs


def local_gpus() -> int | None:
    """The NVIDIA GPUs a local Ray instance would find here, or None when that cannot be told without CUDA.

    0 only where there is plainly no NVIDIA driver (no /proc/driver/nvidia, no nvidia-smi), so a
    GPU machine is never refused on a guess; CUDA_VISIBLE_DEVICES narrows what Ray sees.
    """
    if not NVIDIA_PROC.is_dir():
        return 0 if shutil.which("nvidia-smi") is None else None
    found = len(list(NVIDIA_PROC.iterdir()))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    return min(found, len([device for device in visible.split(",") if device.strip() not in ("", "-1")]))


def local_fit_problems(pipeline: Pipeline, cpus: float, gpus: int | None) -> list[str]:
    """One line per kind of shortfall on a local Ray of ``cpus`` CPUs and ``gpus`` GPUs (None: unknown).

    Each line names every stage it stops (the same stage role repeats in every generation).
    """
    stages: dict[str, list[str]] = {}
    for stage in pipeline.stages:
        need_cpus, need_gpus = stage_cpus_to_start(stage), stage_gpus_to_start(stage)
        if need_cpus > cpus + 1e-9:
            problem = (
                f"needs {need_cpus:g} CPUs at once but the local Ray has {cpus:g}; lower its resources "
                "(num_cpus, workers), raise run.num_cpus, or run on a cluster (--address)"
            )
            stages.setdefault(problem, []).append(stage.name)
        if gpus is not None and need_gpus > gpus + 1e-9:
            problem = (
                f"needs {need_gpus:g} GPUs at once but this machine has {gpus}; set its num_gpus to 0 (or within "
                "what the machine has), or run on a cluster that has them (--address)"
            )
            stages.setdefault(problem, []).append(stage.name)
        if stage.resources.custom:
            names = ", ".join(name for name, _ in stage.resources.custom)
            problem = (
                f"asks for the custom resource(s) {names}, which a local Ray instance does not have; drop them, "
                "or run on a cluster whose nodes were started with them (--address)"
            )
            stages.setdefault(problem, []).append(stage.name)
    return [f"{', '.join(names)}: {problem}" for problem, names in stages.items()]


def live_node_resources(nodes: list[Mapping[str, Any]]) -> list[dict[str, float]]:
    """The total resources of each live node, from ``ray.nodes()`` as data (dead nodes keep their entries there)."""
    return [dict(node.get("Resources", {})) for node in nodes if node.get("Alive", True)]


def live_nodes_by_id(nodes: list[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Each live node's total resources by its node id, from ``ray.nodes()`` as data: what a run remembers of
    its nodes, since a node's entry there keeps no resources once it is dead (Ray 2.x)."""
    return {str(node["NodeID"]): dict(node.get("Resources", {})) for node in nodes if node.get("Alive", True)}


@dataclass(frozen=True)
class LostNode:
    """A node the cluster lost: its id and address, and what it had in all (as the run last saw it alive)."""

    node_id: str
    address: str
    resources: dict[str, float]


def lost_nodes(nodes: list[Mapping[str, Any]], seen: Mapping[str, Mapping[str, float]]) -> list[LostNode]:
    """The dead nodes of ``ray.nodes()`` (as data) whose resources are known: from their own entry (older Rays
    keep them) or from ``seen`` (``live_nodes_by_id`` while they lived). A dead node this run never saw alive
    and whose resources are gone died before the run and is left out: whether it could hold a stage is unknown.
    """
    lost = []
    for node in nodes:
        node_id = str(node.get("NodeID", ""))
        resources = dict(node.get("Resources") or seen.get(node_id) or {})
        if not node.get("Alive", True) and resources:
            lost.append(LostNode(node_id, str(node.get("NodeManagerAddress", "?")), resources))
    return lost


def stage_slots_on_node(node: Mapping[str, float], stage: Stage, drivers_cpus: float) -> float:
    """How many of ``stage``'s workers fit on one node beside ``drivers_cpus`` of trial drivers (inf: no limit).

    A worker never spans nodes: a node's leftover CPU after its drivers counts only in whole workers.
    """
    slots = math.inf
    per_worker = {"CPU": stage.resources.num_cpus, "GPU": stage.resources.num_gpus}
    room = {"CPU": node.get("CPU", 0.0) - drivers_cpus, "GPU": node.get("GPU", 0.0)}
    for key, amount in per_worker.items():
        if amount > 0:
            slots = min(slots, max(0, math.floor(room[key] / amount + 1e-9)))
    return slots


def trials_fitting_nodes(nodes: Sequence[Mapping[str, float]], pipeline: Pipeline, trial_cpus: float) -> int:
    """How many trials can run their largest stages at once on these nodes, each beside its 0.1-CPU-ish driver.

    Why per node: a cluster of three 1-CPU nodes has 3 CPUs in all, room for two trials of 1-CPU
    stages by the total; but the two drivers landed on two nodes and both trials' stages took turns
    on the third. Ray places the drivers where it likes, so each node's room is counted as if every
    trial's driver sat on it: a bound that holds wherever they land. On one node it is the total's
    count (``CPU / (stage + driver)``), so a local Ray's concurrency is unchanged.
    """
    all_cpus = sum(node.get("CPU", 0.0) for node in nodes)
    fits = 0
    while fits < MAX_TRIALS_COUNTED and (fits + 1) * trial_cpus <= all_cpus + 1e-9:
        if not all(_stage_fits(nodes, stage, trial_cpus, fits + 1) for stage in pipeline.stages):
            break
        fits += 1
    return fits


MAX_TRIALS_COUNTED = 10_000  # a bound on the count for stages that ask for nothing


def _stage_fits(nodes: Sequence[Mapping[str, float]], stage: Stage, trial_cpus: float, trials: int) -> bool:
    """Whether ``trials`` copies of ``stage`` (all its workers each) fit at once beside ``trials`` drivers."""
    slots = sum(stage_slots_on_node(node, stage, trials * trial_cpus) for node in nodes)
    return slots >= trials * stage.resources.workers


def most_free_on_one_node(free_per_node: Sequence[Mapping[str, float]], key: str) -> float:
    """The largest amount of ``key`` free on any one node (0 without nodes): what one worker can get at most."""
    return max((node.get(key, 0.0) for node in free_per_node), default=0.0)
