"""`relay submit FILE --tune`: a sweep's driver as a Ray job on the submitting.

Why: `relay tune --address` keeps the sweep's driver (Ray Tune's controller, the trials' bookkeeping)
on the machine that typed it, so closing that laptop stopped the sweep. As a Ray job the driver runs
on the head node, like a submitted run's: `relay status/logs/stop` follow it under one id,
``sweep-NAME`` (``sweep-NAME-resume-N`` for each later job of the same sweep on that cluster).
Everything is checked here first, as for a submitted run: bad input exits 2 and nothing is uploaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
from pathlib import Path
from typing import Any

from orchestrator import jobs
from orchestrator.cli import run_locations, submitting
from orchestrator.cli.common import load_pipeline_file, overridden, pipeline_code_versions, pipelines_of
from orchestrator.cli.tune import SUBMITTED_RESUME_ENV
from orchestrator.config import WORKSPACE_ENV, workspace_setting
from orchestrator.engine.fit import cluster_needs
from orchestrator.errors import ConfigError
from orchestrator.tune.plan import SweepPlan, plan_sweep, space_fit_problems

log = logging.getLogger("relay")

JOB_PREFIX = "sweep-"  # a sweep's job id: sweep-NAME, apart from the run ids of `relay submit`
SHARED_OUTPUT = "/mnt/shared/sweeps/NAME"  # an example of a folder every node mounts


def submit_sweep(args: argparse.Namespace) -> int:
    """Check the sweep here, then submit `relay tune FILE ...` as a Ray job; print its id (and follow it: --wait)."""
    spec, config, data = load_pipeline_file(args.config, args.overrides, pipelines_of(args), local=False)
    if not submitting.is_sweep(config):
        raise ConfigError(
            [
                f"--tune: {args.config} has no `tune:` section to search; add one (README, Tuning), or drop --tune to "
                "submit one run of the file"
            ],
            "the command line",
        )
    env_vars = submitting.location_flags_env(args)
    config = submitting.with_location_env(config, env_vars)
    pipeline = spec.build(config)
    try:
        plan = plan_sweep(data, config, spec.build, pipeline_code_versions(pipeline), source=args.config)
    except ConfigError as exc:  # as `relay tune` says them: each names the override that set its key
        raise overridden(exc.problems, args.overrides, args.config) from exc
    locations = run_locations.submitted_locations(config, env_vars)
    output = cluster_output(args.output, config, plan.name)
    check_durable_sweep(locations, output, args.config)
    run_locations.check_reachable(locations, args.config)
    check_sweep_state(args, plan, output)
    url = jobs.resolve_address(args.address)
    jobs.connect(url)  # clear auth and reachability errors before the cluster is read
    if not args.skip_resource_check:
        check_trials_fit(url, plan, config, pipeline, args)
    job_id = jobs.free_submission_id(url, JOB_PREFIX + plan.name)  # refuses while a job of the sweep still runs
    again = resume_command(args, url)
    tune_flags = [*(["--output", args.output] if args.output else []), *(["--resume"] if args.resume_sweep else [])]
    job_id = jobs.submit_entrypoint(
        url,
        jobs.pipeline_entrypoint(args.config, args.overrides, str(Path.cwd()), run_flags=tune_flags, command="tune"),
        str(Path.cwd()),
        submission_id=job_id,
        env_vars={
            **jobs.relay_env_vars(),
            **env_vars,
            **submitting.job_address_env(url),
            SUBMITTED_RESUME_ENV: again,
        },
        metadata={**sweep_metadata(config, plan), "relay.resume": again},
        skip=[config.run.workspace or os.environ.get(WORKSPACE_ENV), *submitting.local_paths(locations)],
    )
    warning = jobs.config_path_warning(args.config, str(Path.cwd()))
    if warning:
        log.warning(warning)
    print(job_id, flush=True)
    return submitting.follow_to_the_end(url, job_id) if args.wait else 0


def sweep_metadata(config: Any, plan: SweepPlan) -> dict[str, str]:
    """What `ray job list`, the dashboard and `relay jobs` show beside a sweep's job."""
    return {"relay.pipeline": config.pipeline, "relay.name": config.name, "relay.sweep": plan.name}


def cluster_output(output: str | None, config: Any, name: str) -> str:
    """The sweep's folder as the job will see it: --output, else WORKSPACE/tune/NAME with the job's workspace
    (run.workspace, --workspace, $RELAY_WORKSPACE, else ./relay-workspace inside the job's working folder)."""
    return output or f"{workspace_setting(config.run).rstrip('/')}/tune/{name}"


def check_durable_sweep(locations: run_locations.Locations, output: str, source: str) -> None:
    """The stores and the sweep's folder must outlive the job, every problem said at once (exit 2).

    The folder holds best.yaml, the trials and Ray Tune's state, which `--resume-sweep` continues from:
    inside the job's working folder (a relative path) it went with Ray's session.
    """
    problems = run_locations.durability_problems(locations)
    why = run_locations.impermanence(output)
    if why is not None:
        problems.append(
            f"--output: the sweep folder {output} would be {why}; pass --output on storage every node mounts "
            f"(e.g. {SHARED_OUTPUT}), or --workspace there"
        )
    if problems:
        raise ConfigError(problems, source)


def check_sweep_state(args: argparse.Namespace, plan: SweepPlan, output: str) -> None:
    """A new sweep must not land on one that exists, and --resume-sweep needs one: checked when this machine sees
    the folder (a shared mount), else left to the job, whose `relay tune` checks it before any trial."""
    folder = Path(output).expanduser()
    if not folder.is_dir():
        if args.resume_sweep:
            log.info("%s is not visible from here; the job checks the sweep's folder on the cluster", output)
        return
    from orchestrator.tune import sweep  # Ray Tune (seconds to import): only once the sweep checks out

    exists = sweep.can_resume(plan_at(plan, folder))
    if exists and not args.resume_sweep:
        problem = (
            f"a sweep already exists at {folder}; continue it with --resume-sweep, or set tune.name=NEW or pass "
            "--output DIR for a new one"
        )
    elif args.resume_sweep and not exists:
        problem = f"--resume-sweep: nothing to resume at {folder}; submit it without --resume-sweep"
    else:
        return
    raise ConfigError([f"tune: {problem}"], args.config)


def plan_at(plan: SweepPlan, folder: Path) -> SweepPlan:
    """``plan`` with its sweep folder at ``folder``."""
    return dataclasses.replace(plan, output=str(folder.resolve()))


def check_trials_fit(url: str, plan: SweepPlan, config: Any, pipeline: Any, args: argparse.Namespace) -> None:
    """Refuse (exit 2) a sweep some trial of which could never start on the cluster, before anything is uploaded.

    The base config's stages first, as for a submitted run (the cluster's totals, a worker per node);
    then each `resources.*` value the space can give, against the nodes' sizes (``space_fit_problems``).
    """
    needed = (
        args.num_gpus
        if args.num_gpus is not None
        else max((s.resources.num_gpus * s.resources.workers for s in pipeline.stages), default=0.0)
    )
    jobs.check_cluster_resources(url, {**cluster_needs(pipeline), "GPU": needed})
    jobs.check_workers_fit(url, jobs.worker_requests(pipeline.stages))
    nodes = jobs.node_resources(url)
    if nodes is None:
        return  # check_workers_fit said so already

    def fits(candidate: Any) -> list[str]:
        return jobs.oversized_workers(jobs.worker_requests(candidate.stages), nodes)

    problems = space_fit_problems(plan.base, config.tune.space, type(config), plan.build, fits)
    if problems:
        raise overridden(problems, args.overrides, args.config)


def resume_command(args: argparse.Namespace, url: str) -> str:
    """The `relay submit ... --tune --resume-sweep` line that continues this sweep as a new job on the submitting."""
    flags = [
        *(["--output", args.output] if args.output else []),
        *(["--workspace", args.workspace] if args.workspace else []),
        *(["--artifact-uri", args.artifact_uri] if args.artifact_uri else []),
    ]
    words = ["relay", "submit", args.config, *args.overrides, "--tune", "--resume-sweep", *flags, "--address", url]
    return shlex.join(words)
