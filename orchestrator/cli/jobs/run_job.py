"""`relay submit CONFIG` and `relay submit --resume RUN_ID`: a pipeline run as a Ray job on a cluster.

One id: `relay submit` picks the run id, submits the job under it and hands it to `relay run
--run-id`, so `relay status ID`, `ray job status ID`, the run record in the store and the
MLflow run name all say the same thing. Everything a cluster would refuse late is refused here
first (exit 2): bad flags, a config error, stores that would not outlive the cluster or do not
answer, a run id the store holds.

Apart from ``cluster`` (the commands that act on a job once it exists) and ``sweep_job`` (a
sweep's driver as a job, `relay submit FILE --tune`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from orchestrator import jobs
from orchestrator.cli import temporary
from orchestrator.cli.common import new_run_id, pipelines_of, store_named_by, store_of, store_option
from orchestrator.cli.jobs import sweep_job
from orchestrator.cli.jobs.submitting import (
    follow_to_the_end,
    gpus_needed,
    is_sweep,
    job_address_env,
    local_paths,
    location_flags_env,
    with_location_env,
)
from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.cli.preflight import check_run_id, open_store
from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.run import resume_guard, run_locations
from orchestrator.cli.run.execution import stages_to_rerun
from orchestrator.cli.run.pipeline import cache_flags
from orchestrator.cli.run.run_record import read_run_record
from orchestrator.cli.sweeps.sweep_names import check_run_id_free
from orchestrator.config import TRACKING_URI_ENV, WORKSPACE_ENV, RunSettings, tracking_uri
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.fit import cluster_needs
from orchestrator.engine.ledger import CONFIG_FILE, RunStatus, record_path, tracking_lost_at
from orchestrator.errors import ConfigError

log = logging.getLogger("relay")


STORE_KEY = "relay.artifact_uri"  # the job's metadata: the artifact store its run writes to, as resolved at submit


def job_metadata(pipeline: str, name: str, run_id: str, store: str | None = None) -> dict[str, str]:
    """What `ray job list` and the dashboard show beside the job: the pipeline and the run id; and the artifact
    store the run writes to (``STORE_KEY``), which `relay status` reads the run's record from (``cluster.job_store``)."""
    stored = {STORE_KEY: store} if store else {}
    return {"relay.pipeline": pipeline, "relay.name": name, "relay.run_id": run_id, **stored}


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate locally (bad input never reaches the cluster), then submit `relay run` as a Ray job.

    Refused with exit 2 before anything is submitted: a config error, stores that would not
    outlive the cluster (run_locations.check_durable), a store or tracking server that does not
    answer, an address that is not a Ray dashboard. The config's folders are the cluster's, so
    only what does not depend on this machine's folders is checked here; the job's `relay run`
    checks the rest before it writes.
    """
    problems = submit_flag_problems(args)
    if problems:
        raise ConfigError(problems, "the command line")
    jobs.resolve_address(args.address)  # no address, or a malformed one, is bad input: say so before reading
    if args.resume:
        return submit_resume(args)
    if args.tune:
        return sweep_job.submit_sweep(args)
    run_id = args.run_id if args.run_id is not None else args.submission_id
    if run_id is not None:
        check_run_id(run_id)
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args), local=False)
    pipeline = spec.build(config)
    stages_to_rerun(pipeline, args.rerun_from, args.no_cache)  # an unknown stage is bad input, found here
    return submit_run(args, config, pipeline, run_id)


def submit_run(args: argparse.Namespace, config: Any, pipeline: Pipeline, run_id: str | None) -> int:
    """Submit the checked ``config`` as a job, once its stores would outlive the cluster and answer from here.

    ``run_id``: the one --run-id gave, checked against the store; None for a new one. The locations are
    those the job will resolve (--workspace / --artifact-uri become its variables), so they are checked
    as the cluster will see them.
    """
    env_vars = location_flags_env(args)
    locations = run_locations.submitted_locations(config, env_vars)
    config = with_location_env(config, env_vars)
    run_locations.check_durable(locations, args.config)
    run_locations.check_reachable(locations, args.config)
    if run_id is not None:
        check_run_id_unused(locations.store, run_id, jobs.resolve_address(args.address), config.run)
    run_id = new_run_id(config.name) if run_id is None else run_id
    job_id = jobs.submit_pipeline(
        args.address,
        args.config,
        args.overrides,
        str(Path.cwd()),
        note=sweep_note(args) if is_sweep(config) else None,
        submission_id=run_id,
        num_gpus=gpus_needed(args, pipeline),
        check_resources=not args.skip_resource_check,
        needs=cluster_needs(pipeline),
        workers=jobs.worker_requests(pipeline.stages),
        metadata=job_metadata(config.pipeline, config.name, run_id, locations.store),
        run_flags=cache_flags(args),
        env_vars={**env_vars, **job_address_env(args.address)},
        skip=[config.run.workspace or os.environ.get(WORKSPACE_ENV), *local_paths(locations)],
    )
    print(job_id, flush=True)
    return follow_to_the_end(args.address, job_id) if args.wait else 0


def sweep_note(args: argparse.Namespace) -> str:
    """What `relay submit` of a file with a `tune:` section says on stderr before it submits: one run, not the sweep.

    Why: the job runs `relay run FILE`, which runs the base config once; a user who submitted a sweep
    file got exit 0 and one run, with no word that the `tune:` section was left out. The base config is
    a run of its own (the baseline beside the sweep, as `relay run FILE` runs it here), so it is still
    submitted; the sweep's own job is the same command with --tune (and the same location flags).
    """
    command = sweep_job.submit_command(args, jobs.resolve_address(args.address), resume=False)
    return (
        f"relay: {args.config} has a `tune:` section, which `relay submit` does not run: this job is one run of the "
        f"base config (`relay run {args.config}`), not the sweep. To run the sweep as a job on this cluster: "
        f"`{command}`"
    )


def check_run_id_unused(
    store_uri: str, run_id: str, address: str = "http://HOST:8265", run: RunSettings | None = None
) -> None:
    """Refuse (exit 2) a --run-id that the store already holds, or that names a sweep of the workspace ``run``
    resolves to (``sweep_names.check_run_id_free``), when this machine sees the store.

    Otherwise the job is accepted and fails on the cluster with "run ... already exists". A local
    folder that does not exist here is the cluster's own mount: the job's `relay run` checks it there.
    The way on is said for a submit (``address``: the cluster's dashboard): `relay submit --resume`
    for a run that has not finished, another id for one that has (a resume would only check it).
    """
    path = run_locations.local_path(store_uri)
    if path is not None and not Path(path).is_dir():
        unseen = unseen_folder(Path(path), "does not exist here yet")
        log.info("%s %s; --run-id %s is checked on the cluster", store_uri, unseen, run_id)
        return
    store = open_store(store_uri)
    if store.read_record(record_path(run_id, CONFIG_FILE)) is None:
        if run is not None:  # else the job's `relay run` refused it on the cluster, after the upload
            check_run_id_free(store, run, run_id)
        return
    status = run_status(store, run_id)
    if status is RunStatus.FINISHED:
        way_on = "it has finished: pick another --run-id (or leave --run-id out for a new one)"
    else:
        way_on = (
            f"it is {status}: finish it with `relay submit --resume {run_id} --address {address}"
            f"{store_option(store_uri)}`, or pick another --run-id (or leave --run-id out for a new one)"
        )
    raise ConfigError([f"--run-id: a run {run_id!r} already exists in {store_uri}; {way_on}"], "the command line")


def unseen_folder(folder: Path, absent: str) -> str:
    """Why this machine cannot read a store's ``folder``, in words: ``absent`` where its parent is a folder here
    (a new workspace's store, which the job makes), "is not visible from here" where its parent is not
    either (a mount of the cluster's alone) or cannot be entered, "is not a folder here" for a file.

    Why: the first `relay submit` to a new workspace was told its store "is not visible from here",
    which reads as a shared-storage problem.
    """
    try:
        if folder.exists():
            return "is not a folder here"
        if folder.parent.is_dir():
            return absent
    except OSError:  # a folder above that this user may not enter
        pass
    return "is not visible from here"


def submit_flag_problems(args: argparse.Namespace) -> list[str]:
    """Every flag of `relay submit` that is wrong on its own or with the others, before anything is read.

    With --resume the job resubmits the run from its saved config under its own id, so a
    pipeline file, overrides and the flags that shape a new run would be silently ignored.
    """
    if not args.resume:
        problems = [jobs.resource_problem("--num-gpus", args.num_gpus)] if args.num_gpus is not None else []
        if args.driver_gone:
            problems.append("--driver-gone: only with --resume RUN_ID (a resume whose last job cannot be checked)")
        if args.config is None:
            problems.append("config: pass a pipeline file (relay submit CONFIG ...), or --resume RUN_ID")
        return [problem for problem in [*problems, *sweep_flag_problems(args)] if problem]
    problems = [] if not args.tune else ["--tune: not with --resume RUN_ID, which resumes a run; drop one of the two"]
    if args.config is not None:
        given = " ".join([args.config, *args.overrides])
        problems.append(
            f"{given!r}: --resume RUN_ID resubmits the run from the config saved with it, so a pipeline file and "
            "overrides are not read; drop them (or drop --resume to submit a new run)"
        )
    ignored = {
        "--run-id": args.run_id is not None or args.submission_id is not None,
        "--rerun-from": args.rerun_from is not None,
        "--no-cache": args.no_cache,
        "--num-gpus": args.num_gpus is not None,
        "--output": args.output is not None,
        "--resume-sweep": args.resume_sweep,
    }
    problems += [
        f"{flag}: has no effect with --resume (the run keeps its id, cache and resources); drop {flag}"
        for flag, given in ignored.items()
        if given
    ]
    return problems


def sweep_flag_problems(args: argparse.Namespace) -> list[str]:
    """The flags that only a sweep's job takes (--output, --resume-sweep) without --tune, and those a sweep's job
    has no use for with it (it is named sweep-NAME and runs every trial's stages as `relay tune` does)."""
    if not args.tune:
        given = {"--output": args.output is not None, "--resume-sweep": args.resume_sweep}
        return [
            f"{flag}: only with --tune (a sweep's job); add --tune, or drop {flag}" for flag, on in given.items() if on
        ]
    ignored = {
        "--run-id": (args.run_id or args.submission_id) is not None,
        "--rerun-from": args.rerun_from is not None,
        "--no-cache": args.no_cache,
    }
    return [
        f"{flag}: has no effect with --tune (a sweep's job is named sweep-NAME, from tune.name); drop {flag}"
        for flag, on in ignored.items()
        if on
    ]


def submit_resume(args: argparse.Namespace) -> int:
    """`relay resume RUN_ID` as a job: the record is checked here when this machine sees the store.

    The job gets the store as --artifact-uri; its id is the run id, or ``RUN_ID-resume-N``
    on a cluster that already ran a job by that id. A run that finished is not submitted (``finished_note``), nor
    one a job still runs on this cluster (``free_submission_id``) or on the one whose job last ran it
    (``resume_guard.check_last_cluster``; --driver-gone: taken as gone, here and in the job).
    """
    check_run_id(args.resume)
    store = store_of(args)
    key = store_named_by(args)
    path = run_locations.local_path(store.uri)
    seen = path is None or Path(path).exists()
    if not seen:
        log.info(
            "%s %s; the run record is read on the cluster", store.uri, unseen_folder(Path(path), "does not exist here")
        )
        check_resume_durable(args.resume, store.uri, key)
        name, pipeline = args.resume, "?"
    else:
        _, config = read_run_record(store, args.resume, pipelines_of(args))
        finished = finished_note(store, args.resume)
        if finished is not None:
            print(finished, file=sys.stderr, flush=True)
            return 0
        tracking = tracking_uri(config.run, config.tracking)
        check_resume_durable(args.resume, store.uri, key, tracking, config.tracking.uri)
        run_locations.check_reachable(run_locations.Locations(store.uri, tracking, store_key=key), "the command line")
        name, pipeline = config.name, config.pipeline
    url = jobs.resolve_address(args.address)
    jobs.connect(url)
    job_id = jobs.free_submission_id(url, args.resume)  # a job of the run still running on this cluster: refused
    if seen:
        last_cluster_checked(args, store, url)
    job_id = jobs.submit_entrypoint(
        url,
        resume_entrypoint(args, store.uri),
        str(Path.cwd()),
        submission_id=job_id,
        env_vars={**jobs.relay_env_vars(), **job_address_env(url)},
        metadata=job_metadata(pipeline, name, args.resume, store.uri),
        skip=[args.workspace or os.environ.get(WORKSPACE_ENV), run_locations.local_path(store.uri)],
        kind="resume",
    )
    print(job_id, flush=True)
    return follow_to_the_end(url, job_id) if args.wait else 0


def resume_entrypoint(args: argparse.Namespace, store_uri: str) -> str:
    """The job's `relay resume RUN_ID --artifact-uri STORE`, with --driver-gone where the submit was given it: the
    job's resume then takes the run over without asking the cluster that last ran it, as the submit did."""
    entrypoint = jobs.resume_entrypoint(args.resume, store_uri)
    return f"{entrypoint} --driver-gone" if args.driver_gone else entrypoint


def last_cluster_checked(args: argparse.Namespace, store: ArtifactStore, url: str) -> None:
    """Refuse (exit 2) while the cluster whose job last ran the run, when another one than ``url``, still runs a job
    of it (``resume_guard.check_last_cluster``); --driver-gone skips the check, and says so."""
    if args.driver_gone:
        log.warning(
            "run %s: its last driver is taken to be gone (--driver-gone): the cluster that last ran it is not asked",
            args.resume,
        )
        return
    resume_guard.check_last_cluster(store, args.resume, url)


def check_resume_durable(
    run_id: str, store_uri: str, key: str, tracking: str | None = None, tracking_setting: str | None = None
) -> None:
    """Refuse (exit 2) a resume on a cluster whose stores would not outlive it, each named by what chose it.

    ``key``: the flag or variable of this command that chose the store (``store_named_by``), since a resume reads
    no configuration; the tracking store is the run's saved config's (``tracking_setting``: its tracking.uri), or
    MLFLOW_TRACKING_URI's. Why: the store given as --workspace was refused as "run.artifact_uri: ... in the
    configuration", with a fix that sets config keys a resume does not read.
    """
    problems = []
    why = impermanence_of(store_uri)
    if why is not None:
        problems.append(
            f"{key}: the artifact store {store_uri} (the run's record and stage outputs) would be {why}; a resume on "
            "a cluster needs the run's store where every node reads it: name it there (--workspace DIR, e.g. "
            f"{run_locations.SHARED_EXAMPLE}, or --artifact-uri s3://BUCKET/PREFIX), or resume the run on this "
            f"machine: relay resume {run_id}{store_option(store_uri)}"
        )
    tracking_key = run_locations.env_key(tracking_setting, TRACKING_URI_ENV, "tracking.uri")
    why = None if tracking is None else impermanence_of(tracking)
    if why is not None:
        problems.append(
            f"{tracking_key}: the run's MLflow tracking store {tracking} would be {why}; "
            f"{run_locations.tracking_fix(tracking_key)}"
        )
    if problems:
        raise ConfigError(problems, "the command line")


def impermanence_of(uri: str) -> str | None:
    """Why a store at ``uri`` would not outlive the cluster (``temporary.impermanence``); None for a remote one."""
    path = run_locations.local_path(uri)
    return None if path is None else temporary.impermanence(path)


def finished_note(store: ArtifactStore, run_id: str) -> str | None:
    """The line that `relay submit --resume` of a finished run says instead of submitting a job; None when the run is
    not finished, or finished with an incomplete MLflow record, which the job's resume fills in.

    Why: the job found every stage cached (`0 executed, 7 cached`) and ended: a cluster's upload, start and
    time spent on nothing. Said on stderr with exit 0 (the run is where the user wants it), so that a script
    reading the job id from stdout gets none.
    """
    if run_status(store, run_id) is not RunStatus.FINISHED or tracking_lost_at(store, run_id) is not None:
        return None
    return (
        f"run {run_id} finished; nothing to resume, so no job was submitted "
        f"(`relay generations {run_id}{store_option(store.uri)}` shows its results)"
    )
