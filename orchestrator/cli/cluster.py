"""`relay submit|status|logs|stop|jobs`: pipeline runs as Ray jobs on a cluster.

One id: `relay submit` picks the run id, submits the job under it and hands it to `relay run
--run-id`, so `relay status ID`, `ray job status ID`, the run record in the store and the
MLflow run name all say the same thing.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from orchestrator import jobs
from orchestrator.cli import run_locations, sweep_job
from orchestrator.cli.common import (
    add_address,
    add_artifact_uri,
    add_workspace,
    new_run_id,
    pipelines_of,
    store_of,
    store_option,
)
from orchestrator.cli.execution import stages_to_rerun
from orchestrator.cli.pipeline import add_cache_flags, cache_flags
from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.cli.preflight import check_run_id, open_store
from orchestrator.cli.run_record import read_run_record
from orchestrator.cli.run_status import failed_stage, run_status
from orchestrator.cli.submitting import (
    follow,
    follow_to_the_end,
    gpus_needed,
    is_sweep,
    job_address_env,
    local_paths,
    location_flags_env,
    with_location_env,
)
from orchestrator.config import ARTIFACT_URI_ENV, WORKSPACE_ENV, tracking_uri
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.fit import cluster_needs
from orchestrator.engine.ledger import CONFIG_FILE, RunStatus, record_path, tracking_lost_at
from orchestrator.errors import ConfigError, RelayError
from orchestrator.tracking.report import text_table

log = logging.getLogger("relay")

JOB_HEADERS = ["job id", "status", "started", "pipeline", "entrypoint"]


def job_metadata(pipeline: str, name: str, run_id: str) -> dict[str, str]:
    """What `ray job list` and the dashboard show beside the job: the pipeline and the run id."""
    return {"relay.pipeline": pipeline, "relay.name": name, "relay.run_id": run_id}


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
    env_vars = location_flags_env(args)
    locations = run_locations.submitted_locations(config, env_vars)
    config = with_location_env(config, env_vars)
    run_locations.check_durable(locations, args.config)
    run_locations.check_reachable(locations, args.config)
    if run_id is not None:
        check_run_id_unused(locations.store, run_id, jobs.resolve_address(args.address))
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
        metadata=job_metadata(config.pipeline, config.name, run_id),
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


def check_run_id_unused(store_uri: str, run_id: str, address: str = "http://HOST:8265") -> None:
    """Refuse (exit 2) a --run-id that the store already holds, when this machine sees the store.

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
        return
    status = run_status(store, run_id)
    if status is RunStatus.FINISHED:
        way_on = "it has finished: pick another --run-id (or leave --run-id out for a new one)"
    else:
        way_on = (
            f"it is {status}: finish it with `relay submit --resume {run_id} --address {address}`, or pick another "
            "--run-id (or leave --run-id out for a new one)"
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
    on a cluster that already ran a job by that id. A run that finished is not submitted (``finished_note``).
    """
    check_run_id(args.resume)
    store = store_of(args)
    path = run_locations.local_path(store.uri)
    if path is not None and not Path(path).exists():
        log.info(
            "%s %s; the run record is read on the cluster", store.uri, unseen_folder(Path(path), "does not exist here")
        )
        run_locations.check_durable(run_locations.Locations(store.uri, None))
        name, pipeline = args.resume, "?"
    else:
        _, config = read_run_record(store, args.resume, pipelines_of(args))
        finished = finished_note(store, args.resume)
        if finished is not None:
            print(finished, file=sys.stderr, flush=True)
            return 0
        locations = run_locations.Locations(store.uri, tracking_uri(config.run, config.tracking))
        run_locations.check_durable(locations)
        run_locations.check_reachable(locations)
        name, pipeline = config.name, config.pipeline
    jobs.connect(args.address)
    job_id = jobs.submit_entrypoint(
        args.address,
        jobs.resume_entrypoint(args.resume, store.uri),
        str(Path.cwd()),
        submission_id=jobs.free_submission_id(args.address, args.resume),
        env_vars={**jobs.relay_env_vars(), **job_address_env(args.address)},
        metadata=job_metadata(pipeline, name, args.resume),
        skip=[args.workspace or os.environ.get(WORKSPACE_ENV), run_locations.local_path(store.uri)],
    )
    print(job_id, flush=True)
    return follow_to_the_end(args.address, job_id) if args.wait else 0


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


def latest_job(address: str | None, job_id: str) -> str:
    """The job a run id names now: its newest job, ``RUN_ID-resume-N`` once the run was resumed on this cluster.

    Why: Ray keeps a job id for good, so `relay submit --resume RUN_ID` on the cluster that ran
    the run submits ``RUN_ID-resume-2``; `relay stop RUN_ID` then stopped nothing ("already
    finished") while the resume trained on. Said on stderr whenever another job is meant. A sweep's name
    (`tune.name`, what `relay generations` takes) means its job, ``sweep-NAME``: it was "no job 'NAME'".
    """
    rows = jobs.list_jobs(address)
    ids = {row["id"] for row in rows}
    if job_id not in ids and sweep_job.JOB_PREFIX + job_id in ids:
        print(f"{job_id}: no job by that id; sweep {job_id}'s job is {sweep_job.JOB_PREFIX + job_id}", file=sys.stderr)
        job_id = sweep_job.JOB_PREFIX + job_id
    latest = jobs.latest_job_of(rows, job_id)
    if latest != job_id:
        print(f"{job_id}: its newest job is {latest} (a later job of it); this is about that one", file=sys.stderr)
    return latest


def cmd_status(args: argparse.Namespace) -> int:
    """The job's status (Ray's) on stdout; for a job that ended with its run not finished, the way on on stderr."""
    details = jobs.job_details(args.address, latest_job(args.address, args.job_id))
    print(details["status"], flush=True)
    way_on = ended_job_way_on(jobs.resolve_address(args.address), details)
    if way_on is not None:
        print(way_on, file=sys.stderr, flush=True)
    return 0


def ended_job_way_on(address: str, details: dict[str, Any]) -> str | None:
    """What to do about a job that ended with its run not finished, as the run's record says (read as `relay runs`
    reads it); None for a job still running, one that is no run's, or a run finished or not seen from here.

    Why: after the job's driver was killed, `relay status` said only Ray's `FAILED`, `relay runs` said
    INTERRUPTED, and nothing named `relay submit --resume`, the way on for a run on a cluster.
    """
    run_id = details["metadata"].get("relay.run_id")
    if details["status"] not in jobs.TERMINAL_STATUSES:
        return None
    if details["metadata"].get("relay.sweep"):
        return ended_sweep_way_on(details)
    if not run_id:
        return None
    store = job_store(details)
    if store is None or store.read_record(record_path(run_id, CONFIG_FILE)) is None:
        return None
    status = run_status(store, run_id)
    if status in (RunStatus.FINISHED, RunStatus.UNREADABLE):
        return None
    submit = f"`relay submit --resume {run_id} --address {address}`"
    if status is RunStatus.FAILED and (failure := failed_stage(store, run_id)) is not None:
        stage, error = failure
        return (
            f"run {run_id} is FAILED, not finished: stage {stage} failed: {error.rstrip('.')}. Once that cause is "
            f"fixed, {submit} retries it (completed stages are skipped)"
        )
    if status in (RunStatus.INTERRUPTED, RunStatus.STOPPED):
        said = f"{status}, not finished"
    else:  # RUNNING, STARTING or NOT STARTED in its record: its driver ended with the job
        said = f"not finished (its record says {status}, but its job has ended)"
    return f"run {run_id} is {said}: {submit} continues it (completed stages are skipped)"


def ended_sweep_way_on(details: dict[str, Any]) -> str | None:
    """How to go on with a sweep whose job ended before the sweep did; None once it SUCCEEDED.

    STOPPED (`relay stop`): its `--resume-sweep` command continues it. FAILED: the job's log says why; a sweep
    refused before its first trial (bad input on the cluster) has nothing to continue, so the line says both.
    Its trials' runs are the sweep's: `relay submit --resume RUN_ID` of one would not continue it.
    """
    status, metadata = details["status"], details["metadata"]
    if status == "SUCCEEDED":
        return None
    name, again = metadata["relay.sweep"], metadata.get("relay.resume") or "relay submit FILE --tune --resume-sweep"
    if status == "STOPPED":
        return (
            f"sweep {name}'s job is STOPPED: `{again}` continues it as a new job (trials Ray Tune recorded as finished "
            "are not rerun; one that finished seconds before the stop may run its last generation again, from the cache)"
        )
    return (
        f"sweep {name}'s job is {status}: `relay logs` of it says why; once that is fixed, `{again}` continues the sweep "
        "if its trials had started (the job's log shows a trials table), else submit it again without --resume-sweep"
    )


def job_store(details: dict[str, Any]) -> ArtifactStore | None:
    """The artifact store the job's run wrote to, when this machine sees it: the resume's --artifact-uri, else the
    job's RELAY_ARTIFACT_URI / RELAY_WORKSPACE, else this shell's (as `relay runs`); None when it cannot be read."""
    env = details["env_vars"]
    try:
        words = shlex.split(details["entrypoint"])
        given = words[words.index("--artifact-uri") + 1] if "--artifact-uri" in words[:-1] else None
        args = argparse.Namespace(
            artifact_uri=given or env.get(ARTIFACT_URI_ENV) or None, workspace=env.get(WORKSPACE_ENV) or None
        )
        store = store_of(args)
        path = run_locations.local_path(store.uri)
        return None if path is not None and not Path(path).is_dir() else store
    except (RelayError, ValueError) as exc:  # ValueError: an entrypoint shlex cannot split
        log.debug("the run record of the job is not read: %s", exc)
        return None


def cmd_logs(args: argparse.Namespace) -> int:
    job_id = latest_job(args.address, args.job_id)
    if args.follow:
        follow(args.address, job_id)
    else:
        print(jobs.job_logs(args.address, job_id), end="")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    job_id = latest_job(args.address, args.job_id)
    stopped = jobs.stop_job(args.address, job_id)
    print(f"{job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """The cluster's submitted jobs under a header; Ray drivers that connected directly are only counted.

    Why: a driver (``ray.init`` on the cluster, e.g. `relay tune --address`) showed as a job
    ``08000000`` with an empty entrypoint, and `relay status/logs/stop` cannot act on one.
    """
    rows = jobs.list_jobs(args.address)
    submitted = [row for row in rows if row["type"] == "SUBMISSION"]
    if submitted:
        print(text_table(JOB_HEADERS, [job_cells(row) for row in submitted]))
    else:
        print("no jobs on this cluster yet: submit one with `relay submit CONFIG --address ...`")
    drivers = len(rows) - len(submitted)
    if drivers:
        print(
            f"not listed: {drivers} Ray driver{'s' if drivers > 1 else ''} that connected directly (ray.init, "
            "e.g. `relay tune --address`); `relay status/logs/stop` act on submitted jobs only"
        )
    return 0


def job_cells(row: dict[str, Any]) -> list[str]:
    """One line of `relay jobs`; the pipeline is the job metadata that `relay submit` sets."""
    pipeline = (row.get("metadata") or {}).get("relay.pipeline", "-")
    return [row["id"], row["status"], row.get("start_time") or "-", pipeline, row["entrypoint"]]


def register(commands: Any) -> None:
    submit = commands.add_parser(
        "submit",
        help="run a pipeline file on a Ray cluster as a Ray job (resume a run there: --resume RUN_ID; a sweep: --tune)",
        description="relay submit CONFIG [key=value ...] --address http://HOST:8265 [--wait]; "
        "relay submit --resume RUN_ID --address http://HOST:8265 [--wait]; "
        "relay submit SWEEP_FILE --tune [--resume-sweep] [--output DIR] --address http://HOST:8265 [--wait]",
    )
    submit.add_argument("config", nargs="?", help="the pipeline file to run (not with --resume)")
    submit.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=200")
    add_address(submit)
    submit.add_argument("--run-id", help="the run's id, also the Ray submission id (default: NAME-DATE-TIME-XXXX)")
    submit.add_argument("--submission-id", help=argparse.SUPPRESS)  # the old name of --run-id
    submit.add_argument(
        "--resume", metavar="RUN_ID", help="run `relay resume RUN_ID` as a job (e.g. on a new head node)"
    )
    submit.add_argument(
        "--wait", action="store_true", help="stream the job's log and exit with its outcome (0 succeeded, 1 not)"
    )
    add_cache_flags(submit)
    add_workspace(submit)
    add_artifact_uri(submit)
    submit.add_argument(
        "--num-gpus", type=float, help="GPUs the stages need at once (default: from the config's resources)"
    )
    submit.add_argument(
        "--tune",
        action="store_true",
        help="run the file's `tune:` sweep as the job (`relay tune` on the head node), not one run of its base config",
    )
    submit.add_argument(
        "--resume-sweep",
        action="store_true",
        help="with --tune: continue the file's interrupted sweep (`relay tune --resume`) as a new job",
    )
    submit.add_argument(
        "--output",
        help="with --tune: the sweep's folder as the cluster sees it (default: WORKSPACE/tune/NAME); shared storage",
    )
    submit.add_argument(
        "--skip-resource-check",
        action="store_true",
        help="do not compare what the stages need (CPUs, GPUs, custom resources) with the cluster (autoscaling clusters)",
    )
    submit.set_defaults(handler=cmd_submit)

    for name, handler, text in (("status", cmd_status, "a job's status"), ("stop", cmd_stop, "stop a running job")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("job_id", metavar="RUN_ID", help="a run id (its newest job) or a job id")
        add_address(command)
        command.set_defaults(handler=handler)

    logs = commands.add_parser("logs", help="a job's driver log", description="a job's driver log")
    logs.add_argument("job_id", metavar="RUN_ID", help="a run id (its newest job) or a job id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    add_address(logs)
    logs.set_defaults(handler=cmd_logs)

    listing = commands.add_parser("jobs", help="list the cluster's jobs", description="list the cluster's jobs")
    add_address(listing)
    listing.set_defaults(handler=cmd_jobs)
