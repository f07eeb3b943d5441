"""`relay submit FILE --tune`: a sweep's driver as a Ray job on the cluster.

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
import sys
from pathlib import Path
from typing import Any

from orchestrator import jobs
from orchestrator.cli import temporary
from orchestrator.cli.code_versions import pipeline_code_versions
from orchestrator.cli.common import pipelines_of
from orchestrator.cli.jobs import submitting
from orchestrator.cli.pipeline_files import load_pipeline_file, overridden
from orchestrator.cli.run import run_locations
from orchestrator.cli.sweeps import sweep_folder, sweep_names
from orchestrator.cli.sweeps.sweep_folder import SUBMITTED_RESUME_ENV, SUBMITTED_START_ENV
from orchestrator.config import WORKSPACE_ENV, workspace_setting
from orchestrator.engine.fit import cluster_needs
from orchestrator.errors import ConfigError
from orchestrator.jobs.submit import config_job, say_where_the_config_went
from orchestrator.tune.plan import SweepPlan, plan_sweep
from orchestrator.tune.trial_fit import space_fit_problems

log = logging.getLogger("relay")

JOB_PREFIX = "sweep-"  # a sweep's job id: sweep-NAME, apart from the run ids of `relay submit`
SHARED_OUTPUT = "/mnt/shared/sweeps/NAME"  # an example of a folder every node mounts
OUTPUT_KEY = "relay.output"  # the job's metadata: the sweep's folder, as the cluster sees it
# `relay stop` of a sweep's job as a Ctrl-C: Ray's job supervisor (which gets the job's variables) sends this signal
# and waits this long before SIGKILL. Why: its SIGTERM, SIGKILL 3 s later, cut Ray Tune off mid-loop: the trials'
# MLflow runs stayed RUNNING, with no table or best.yaml; on SIGINT Ray Tune saves its state and returns, and `relay
# tune` closes the trials as interrupted, writes the table and says how to continue, as after a Ctrl-C.
STOPPED_AS_CTRL_C = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}


def submit_sweep(args: argparse.Namespace) -> int:
    """Check the sweep here, then submit `relay tune FILE ...` as a Ray job; print its id (and follow it: --wait)."""
    sweep = checked_sweep(args)
    url = jobs.resolve_address(args.address)
    jobs.connect(url)  # clear auth and reachability errors before the cluster is read
    job_id = sweep_job_id(url, sweep.plan.name)  # a job of the sweep still running: refused
    check_sweep_state(args, sweep.plan, sweep.output)
    finished = finished_sweep_note(url, sweep.plan.name, sweep.output) if args.resume_sweep else None
    if finished is not None:
        print(finished, file=sys.stderr, flush=True)
        return 0
    if not args.skip_resource_check:
        check_trials_fit(url, sweep, args)
    again = submit_command(args, url, resume=True)
    tune_flags = [*(["--output", args.output] if args.output else []), *(["--resume"] if args.resume_sweep else [])]
    skipped = [sweep.config.run.workspace or os.environ.get(WORKSPACE_ENV), args.output]
    skipped += submitting.local_paths(sweep.locations)
    entrypoint, config_env, config_note = (
        config_job(  # a sweep file the upload would not hold goes with the job, as a run's
            args.config, args.overrides, str(Path.cwd()), run_flags=tune_flags, command="tune", skip=skipped
        )
    )
    job_id = jobs.submit_entrypoint(
        url,
        entrypoint,
        str(Path.cwd()),
        submission_id=job_id,
        env_vars={
            **jobs.relay_env_vars(),
            **config_env,
            **sweep.env_vars,
            **submitting.job_address_env(url),
            SUBMITTED_RESUME_ENV: again,
            SUBMITTED_START_ENV: submit_command(args, url, resume=False),
            **STOPPED_AS_CTRL_C,
        },
        metadata={**sweep_metadata(sweep.config, sweep.plan), OUTPUT_KEY: sweep.output, "relay.resume": again},
        skip=skipped,
        kind="sweep",
    )
    say_where_the_config_went(config_note, config_env)
    print(job_id, flush=True)
    return submitting.follow_to_the_end(url, job_id) if args.wait else 0


@dataclasses.dataclass(frozen=True)
class CheckedSweep:
    """A sweep file that passed every check this machine can make, as the job will see it."""

    config: Any  # with --workspace / --artifact-uri in run.*, as the job resolves them
    pipeline: Any
    plan: SweepPlan
    env_vars: dict[str, str]  # the location flags, as the job's variables
    locations: run_locations.Locations
    output: str  # the sweep's folder on the cluster


def checked_sweep(args: argparse.Namespace) -> CheckedSweep:
    """The file, its space and its stores checked as `relay tune` checks them, exit 2 on the first problems found."""
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
    locations = run_locations.submitted_locations(config, env_vars)  # each store named by the setting that chose it
    config = submitting.with_location_env(config, env_vars)
    pipeline = spec.build(config)
    try:
        plan = plan_sweep(data, config, spec.build, pipeline_code_versions(pipeline), source=args.config)
    except ConfigError as exc:  # as `relay tune` says them: each names the override that set its key
        raise overridden(exc.problems, args.overrides, args.config) from exc
    output = cluster_output(args.output, config, plan.name)
    check_durable_sweep(locations, output, output_key(args, config, env_vars), args.config)
    run_locations.check_reachable(locations, args.config)
    return CheckedSweep(config, pipeline, plan, env_vars, locations, output)


def sweep_job_id(url: str, name: str) -> str:
    """``sweep-NAME`` for the sweep's first job, ``sweep-NAME-resume-N`` for each later one on the same cluster (Ray
    never reuses a job id); exit 2 while a job of the sweep is still PENDING or RUNNING: two drivers of one sweep."""
    return jobs.free_submission_id(url, JOB_PREFIX + name, kind="sweep")


def finished_sweep_note(url: str, name: str, output: str) -> str | None:
    """What `relay submit --tune --resume-sweep` of a sweep that finished says instead of submitting a job (on
    stderr, exit 0, as `relay submit --resume` of a finished run: ``run_job.finished_note``); None otherwise.

    Finished: the newest job of the sweep in the same folder on this cluster SUCCEEDED (`relay tune` exits 0 only
    once every trial ended and one scored). Why: the job was accepted and ran to SUCCEEDED again, an upload and a
    Ray Tune start for nothing (and on a cluster scaled to zero, nodes started for it).
    """
    mine = [
        row
        for row in jobs.jobs_of_run(jobs.list_jobs(url), JOB_PREFIX + name)
        if row["metadata"].get(OUTPUT_KEY, output) == output
    ]
    if not mine or mine[-1]["status"] != "SUCCEEDED":
        return None
    return (
        f"sweep {name} finished (its job {mine[-1]['id']} SUCCEEDED); nothing to resume, so no job was submitted "
        f"(its results: {output.rstrip('/')}/best.yaml and trials.csv)"
    )


def sweep_metadata(config: Any, plan: SweepPlan) -> dict[str, str]:
    """What `ray job list`, the dashboard and `relay jobs` show beside a sweep's job."""
    return {"relay.pipeline": config.pipeline, "relay.name": config.name, "relay.sweep": plan.name}


def cluster_output(output: str | None, config: Any, name: str) -> str:
    """The sweep's folder as the job will see it: --output, else WORKSPACE/tune/NAME with the job's workspace
    (run.workspace, --workspace, $RELAY_WORKSPACE, else ./relay-workspace inside the job's working folder)."""
    return output or f"{workspace_setting(config.run).rstrip('/')}/tune/{name}"


def output_key(args: argparse.Namespace, config: Any, env_vars: dict[str, str]) -> str:
    """The setting that chose the sweep's folder: --output, else the workspace's (``run_locations.submitted_locations``'
    order: run.workspace, --workspace, $RELAY_WORKSPACE, the default)."""
    if args.output:
        return "--output"
    if env_vars.get(WORKSPACE_ENV) and config.run.workspace == env_vars[WORKSPACE_ENV]:
        return "--workspace"
    if not config.run.workspace and os.environ.get(WORKSPACE_ENV):
        return f"${WORKSPACE_ENV}"
    return "run.workspace"


def check_durable_sweep(locations: run_locations.Locations, output: str, key: str, source: str) -> None:
    """The stores and the sweep's folder must outlive the job, every problem said at once (exit 2).

    The folder holds best.yaml, the trials and Ray Tune's state, which `--resume-sweep` continues from:
    inside the job's working folder (a relative path) it went with Ray's session. ``key`` chose it.
    """
    problems = run_locations.durability_problems(locations)
    why = temporary.impermanence(output)
    if why is not None:
        folder = "" if key == "--output" else " (WORKSPACE/tune/NAME)"
        problems.append(
            f"{key}: the sweep folder {output}{folder} would be {why}; pass --output on storage every node mounts "
            f"(e.g. {SHARED_OUTPUT}), or --workspace there"
        )
    if problems:
        raise ConfigError(problems, source)


def check_sweep_state(args: argparse.Namespace, plan: SweepPlan, output: str) -> None:
    """What `relay tune` checks of the sweep's folder, where this machine sees it (``seen_here``): a new sweep never
    over another's or over other files, --resume-sweep only of one that exists. Elsewhere the job's `relay tune`
    checks it, before any trial."""
    folder = Path(output).expanduser()
    if not seen_here(folder):
        if args.resume_sweep:
            log.info("%s is not visible from here; the job checks the sweep's folder on the cluster", output)
        return
    from orchestrator.tune import sweep  # Ray Tune (seconds to import): only once the sweep checks out

    located = plan_at(plan, folder)
    exists = folder.is_dir() and sweep.can_resume(located)
    given = argparse.Namespace(resume=args.resume_sweep, output=args.output, config=args.config)
    sweep_names.check_name_free(given, located)  # a run of the sweep's name: the job's `relay tune` refused it
    sweep_folder.check_resume(given, located, exists, flag="--resume-sweep")
    if folder.is_dir():
        sweep_folder.check_output_free(given, located, exists, sweep.sweeps_in(folder), flag="--resume-sweep")


def seen_here(folder: Path) -> bool:
    """Whether this machine sees the sweep's folder where the cluster does: it, its parent or the one above exists
    here (WORKSPACE/tune/NAME of a visible workspace; --output inside a visible shared folder).

    Why not only the folder: a --resume-sweep of a name that never ran was sent on, and its job failed.
    """
    return any(path.is_dir() for path in (folder, folder.parent, folder.parent.parent))


def plan_at(plan: SweepPlan, folder: Path) -> SweepPlan:
    """``plan`` with its sweep folder at ``folder``."""
    return dataclasses.replace(plan, output=str(folder.resolve()))


def check_trials_fit(url: str, sweep: CheckedSweep, args: argparse.Namespace) -> None:
    """Refuse (exit 2) a sweep some trial of which could never start on the cluster, before anything is uploaded.

    The base config's stages first, as for a submitted run (the cluster's totals, a worker per node);
    then each `resources.*` value the space can give, against the nodes' sizes (``space_fit_problems``).
    """
    pipeline = sweep.pipeline
    jobs.check_cluster_resources(url, {**cluster_needs(pipeline), "GPU": submitting.gpus_needed(args, pipeline)})
    jobs.check_workers_fit(url, jobs.worker_requests(pipeline.stages))
    nodes = jobs.node_resources(url)
    if nodes is None:
        return  # check_workers_fit said so already

    def fits(candidate: Any) -> list[str]:
        return jobs.oversized_workers(jobs.worker_requests(candidate.stages), nodes)

    plan, config = sweep.plan, sweep.config
    problems = space_fit_problems(plan.base, config.tune.space, type(config), plan.build, fits)
    if problems:
        raise overridden(problems, args.overrides, args.config)


def submit_command(args: argparse.Namespace, url: str, resume: bool) -> str:
    """The `relay submit FILE ... --tune` line of this sweep, with the location and resource flags it was given; with
    ``resume``, the one that continues it as a new job on the cluster (`--resume-sweep`).

    Why the resource flags: without --skip-resource-check, the line that continues a sweep on an autoscaling
    cluster scaled to zero was refused by the resource check its first submit had skipped.
    """
    flags = [
        *(["--resume-sweep"] if resume else []),
        *(["--output", args.output] if args.output else []),
        *(["--workspace", args.workspace] if args.workspace else []),
        *(["--artifact-uri", args.artifact_uri] if args.artifact_uri else []),
        *(["--num-gpus", f"{args.num_gpus:g}"] if args.num_gpus is not None else []),
        *(["--skip-resource-check"] if args.skip_resource_check else []),
    ]
    return shlex.join(["relay", "submit", args.config, *args.overrides, "--tune", *flags, "--address", url])
