"""Whether a run's stages could ever start where its Ray is: a new local instance, or the nodes of a cluster it joins.

A local instance never grows, so a stage asking for more CPUs or GPUs than it has, or for a custom
resource, would wait forever; on a joined cluster, a stage worker no node can hold would too.
``check_cluster`` is the one refusal before a run writes: the cluster can be joined
(``cluster_join``), and every stage fits.

Apart from ``cluster_join`` because it reads the stages of a pipeline, and `relay tune` asks it
again for each pipeline its space can give (``FitCheck``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from orchestrator import jobs
from orchestrator.cli.run.cluster_join import (
    GCS_PROBE_TIMEOUT_S,
    cluster_to_join,
    ray_cluster_problem,
    starts_local_ray,
)
from orchestrator.cli.run.run_locations import in_ray_job
from orchestrator.config import RunSettings
from orchestrator.config.values import RAY_ADDRESS_WORDS
from orchestrator.dag import Pipeline
from orchestrator.engine.fit import local_fit_problems, local_gpus
from orchestrator.errors import ConfigError
from orchestrator.jobs.auth import token_mode_for_joining

RUN_WAY_ON = (
    "; on an autoscaling cluster that starts larger nodes, run it as a job: `relay submit CONFIG --address "
    "http://HOST:8265 --skip-resource-check`"
)
SWEEP_WAY_ON = (
    "; a sweep's trials run on the nodes the cluster has (`relay submit` would run one run of the base config, not "
    "the sweep): on an autoscaling cluster, start a node that large first (ray up with min_workers >= 1 for its "
    "node type, or scale the KubeRay worker group), then run `relay tune` again"
)


def oversized_worker_problems(
    nodes: list[dict[str, float]] | None, pipeline: Pipeline, sweep: bool = False
) -> list[str]:
    """One line per stage whose one worker no node of a cluster with ``nodes`` can hold (``jobs.oversized_workers``);
    nothing where the nodes could not be read.

    The way on is the command's: a run can go as a job that skips the check on an autoscaling
    cluster; a sweep (``sweep``) cannot, since `relay submit` runs the base config once, so it needs the node up.
    """
    if not nodes:
        return []  # nothing to compare with: ray.init and the executor's own warnings say the rest
    problems = jobs.oversized_workers(jobs.worker_requests(pipeline.stages), nodes)
    way_on = SWEEP_WAY_ON if sweep else RUN_WAY_ON
    return [f"{problem}{way_on}" for problem in problems]


def local_ray_fit_problems(address: str | None, settings: RunSettings, pipeline: Pipeline) -> list[str]:
    """The stages the local Ray instance a run starts could never start (``orchestrator.engine.fit``), sized as
    ray.init sizes it: ``run.num_cpus``, else this machine's CPUs. None where the run starts no such instance.

    Why here: `relay run` refuses these before writing (``check_cluster``) and `relay validate` reports
    the same lines without starting anything; a cluster's size is unknown without joining it, so it is not checked.
    """
    if not starts_local_ray(address, settings):
        return []
    return local_fit_problems(pipeline, settings.num_cpus or os.cpu_count() or 1, local_gpus())


FitCheck = Callable[[Pipeline], list[str]]  # the stages of a pipeline that could never start where a run's Ray is


def _fits_anywhere(pipeline: Pipeline) -> list[str]:
    return []


def fit_check(address: str | None, settings: RunSettings, sweep: bool = False) -> FitCheck:
    """How ``check_cluster`` tells the stages that could never start where this run's stages run: a new local Ray
    instance (``local_fit_problems``) or the nodes of the cluster it joins, read here once (``oversized_worker_problems``).

    Why a function of a pipeline: `relay tune` checks the pipeline of each `resources.*` value its space
    can give against the same Ray (``tune.plan.space_fit_problems``). No Ray, a Ray job's own cluster,
    ``auto`` and a Ray Client address: not known here, so nothing is refused.
    """
    if settings.executor == "local" or (address is None and in_ray_job()):
        return _fits_anywhere
    joined, _ = cluster_to_join(address, settings)
    if joined in (None, "local"):
        cpus, gpus = settings.num_cpus or os.cpu_count() or 1, local_gpus()
        return lambda pipeline: local_fit_problems(pipeline, cpus, gpus)
    if joined in RAY_ADDRESS_WORDS or joined.startswith("ray://"):
        return _fits_anywhere
    nodes = jobs.gcs_node_resources(joined, GCS_PROBE_TIMEOUT_S)
    return lambda pipeline: oversized_worker_problems(nodes, pipeline, sweep)


def check_cluster(
    address: str | None, settings: RunSettings, pipeline: Pipeline, source: str | None = None, sweep: bool = False
) -> FitCheck:
    """Refuse (exit 2) a cluster nobody can join, a stage worker no node of a joined cluster can hold, or stages
    a new local instance could never start; the ``fit_check`` it used, for other pipelines on the same Ray.

    Joining: the address is malformed or nothing listens there. A local instance (no address
    anywhere) never grows, so a stage asking for more CPUs or GPUs than it has, or for a custom
    resource, would wait forever (``orchestrator.engine.fit``). Both before anything is written.
    """
    if settings.executor == "local" or (address is None and in_ray_job()):
        return _fits_anywhere  # no Ray, or the Ray job's own cluster (its driver joins through RAY_ADDRESS)
    joined, key = cluster_to_join(address, settings)
    if joined not in (None, "local"):
        _check_joinable(joined, key, source)
    check = fit_check(address, settings, sweep)  # sweep: `relay tune`, whose way on is not a job
    problems = check(pipeline)
    if problems:
        raise ConfigError(problems, source)
    return check


def _check_joinable(joined: str, key: str, source: str | None) -> None:
    """Refuse (exit 2) a cluster address nobody can join from here; a token cluster sets token mode for joining."""
    problem = ray_cluster_problem(joined, key)
    if problem and key == "$RAY_ADDRESS":
        problem += "; or unset RAY_ADDRESS to run on a new local Ray instance"
    if problem:
        raise ConfigError([problem], "the command line" if key == "--address" else source)
    token_mode_for_joining()  # a token cluster: RAY_AUTH_MODE=token before Ray is imported
