"""`relay status|logs|stop|jobs`: a run's job on a cluster once it exists, and the parsers of every job command.

A run id names its newest job (``RUN_ID-resume-N`` after a resume on the same cluster), a sweep's
name its ``sweep-NAME`` job; a job that ended with its run not finished is told its way on. How a
job is sent is ``run_job``'s (`relay submit`) and ``sweep_job``'s (`relay submit --tune`).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator import jobs
from orchestrator.cli.common import EXIT_FAILED, add_address, add_artifact_uri, add_workspace, store_of, store_option
from orchestrator.cli.jobs import run_job, sweep_job
from orchestrator.cli.jobs.submitting import follow
from orchestrator.cli.records.run_notes import traceback_kept
from orchestrator.cli.records.run_status import failed_stage, run_status
from orchestrator.cli.run import run_locations
from orchestrator.cli.run.pipeline import add_cache_flags
from orchestrator.config import ARTIFACT_URI_ENV, WORKSPACE_ENV
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RunStatus, record_path
from orchestrator.errors import RelayError
from orchestrator.tracking.report import text_table

log = logging.getLogger("relay")

JOB_HEADERS = ["job id", "status", "started", "pipeline", "entrypoint"]
# `relay stop` waits for the job to end: Ray's supervisor sends the job's stop signal, waits its stop time, then SIGKILLs
STOP_WAIT_ENV, STOP_SIGNAL_ENV = "RAY_JOB_STOP_WAIT_TIME_S", "RAY_JOB_STOP_SIGNAL"  # the job's own, where it set them
RAY_STOP_WAIT_S = 3.0  # Ray's JobSupervisor.DEFAULT_RAY_JOB_STOP_WAIT_TIME_S
STOP_MARGIN_S = 30.0  # past that: the driver's exit and Ray's status write, on a busy head node
STOP_POLL_S = 0.5
STOP_SAID_EVERY_S = 10.0  # how often the wait says it still waits


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
    submit = f"`relay submit --resume {run_id} --address {address}{store_option(store.uri)}`"
    if status is RunStatus.FAILED and (failure := failed_stage(store, run_id)) is not None:
        stage, error = failure
        return (
            f"run {run_id} is FAILED, not finished: stage {stage} failed: {error.rstrip('.')}. Once that cause is "
            f"fixed, {submit} retries it (completed stages are skipped){traceback_kept(store, run_id, stage)}"
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
    """The artifact store the job's run wrote to, when this machine sees it: the one `relay submit` resolved and
    kept in the job's metadata (``run_job.STORE_KEY``), else (a job sent by an older Relay) the resume's
    --artifact-uri, the job's RELAY_ARTIFACT_URI / RELAY_WORKSPACE, this shell's (as `relay runs`); None when it
    cannot be read.

    Why the metadata first: a store set in the config (run.workspace, run.artifact_uri, in the file or an override)
    is in none of the others, and the job's RELAY_WORKSPACE, copied from the shell that submitted it, named
    another store: `relay status` read the wrong one and said no way on.
    """
    env = details["env_vars"]
    try:
        words = shlex.split(details["entrypoint"])
        given = words[words.index("--artifact-uri") + 1] if "--artifact-uri" in words[:-1] else None
        recorded = details["metadata"].get(run_job.STORE_KEY)
        args = argparse.Namespace(
            artifact_uri=recorded or given or env.get(ARTIFACT_URI_ENV) or None,
            workspace=env.get(WORKSPACE_ENV) or None,
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
    """Ask the job to stop, then wait (bounded) until Ray says it ended: its status on stdout, the way on on stderr.

    Why wait: Ray keeps a stopped job RUNNING until its driver exits (SIGTERM, then SIGKILL after
    RAY_JOB_STOP_WAIT_TIME_S: 3 s for a run, 60 s for a sweep, which saves its state first), and
    `relay submit --resume` right after `relay stop` was refused as "still running; stop it first".
    """
    job_id = latest_job(args.address, args.job_id)
    address = jobs.resolve_address(args.address)
    if not jobs.stop_job(address, job_id):  # Ray found no supervisor of the job: ended (or not started yet)
        status = jobs.job_status(address, job_id)
        if status in jobs.TERMINAL_STATUSES:
            print(f"{job_id}: already finished ({status})")
            return 0
        print(
            f"relay: job {job_id} is {status}, but Ray found nothing of it to stop yet: run `relay stop {job_id} "
            f"--address {address}` again",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"{job_id}: stop requested", flush=True)
    details = jobs.job_details(address, job_id)
    env = details["env_vars"]
    grace = stop_grace_s(env)
    status = wait_stopped(address, job_id, env.get(STOP_SIGNAL_ENV) or "SIGTERM", grace)
    if status not in jobs.TERMINAL_STATUSES:
        print(
            f"relay: job {job_id} is still {status} {grace + STOP_MARGIN_S:g} s after its stop was requested; the "
            f"stop stays requested: see `relay status {job_id} --address {address}` and `relay logs {job_id} "
            f"--address {address}`",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED
    ended = "" if status == "STOPPED" else " (it ended before the stop reached it)"
    print(f"{job_id}: {status}{ended}", flush=True)
    way_on = ended_job_way_on(address, {**details, "status": status})
    if way_on is not None:
        print(way_on, file=sys.stderr, flush=True)
    return 0


def stop_grace_s(env_vars: dict[str, str]) -> float:
    """How long Ray waits, after the stop signal, before it SIGKILLs the job's driver: the job's
    RAY_JOB_STOP_WAIT_TIME_S (a sweep's job sets 60 s), else Ray's default."""
    try:
        return float(env_vars.get(STOP_WAIT_ENV) or RAY_STOP_WAIT_S)
    except ValueError:
        return RAY_STOP_WAIT_S


def wait_stopped(address: str, job_id: str, signal_name: str, grace_s: float) -> str:
    """The job's status once Ray says it ended, or its last one ``STOP_MARGIN_S`` after Ray's ``grace_s``; said
    on stderr as it waits, so that the wait does not read as a hang.

    Ctrl-C stops the waiting, not the stop: said so, then it propagates (main() exits 130).
    """
    print(
        f"relay: waiting for job {job_id} to end (Ray sends its driver {signal_name}, then SIGKILL after "
        f"{grace_s:g} s; Ctrl-C stops waiting, not the stop)",
        file=sys.stderr,
        flush=True,
    )
    start = said = time.monotonic()
    try:
        while (status := jobs.job_status(address, job_id)) not in jobs.TERMINAL_STATUSES:
            now = time.monotonic()
            if now - said >= STOP_SAID_EVERY_S:
                print(f"relay: job {job_id} is still {status} after {now - start:.0f} s", file=sys.stderr, flush=True)
                said = now
            if now - start >= grace_s + STOP_MARGIN_S:
                return status
            time.sleep(STOP_POLL_S)
    except KeyboardInterrupt:
        print(
            f"\nrelay: stopped waiting; the stop of job {job_id} stays requested and Ray ends it on the cluster: "
            f"see `relay status {job_id} --address {address}`",
            file=sys.stderr,
            flush=True,
        )
        raise
    return status


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
    """One line of `relay jobs`; the pipeline is the job metadata that `relay submit` sets, the entrypoint the command
    the job runs, with the file the user submitted (``jobs.readable_entrypoint``)."""
    pipeline = (row.get("metadata") or {}).get("relay.pipeline", "-")
    entrypoint = jobs.readable_entrypoint(row["entrypoint"], row.get("env_vars") or {})
    return [row["id"], row["status"], row.get("start_time") or "-", pipeline, entrypoint]


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
        "--driver-gone",
        action="store_true",
        help="with --resume: take the run's last driver as gone, where the cluster whose job last ran it answers but "
        "cannot be asked (another token)",
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
    submit.set_defaults(handler=run_job.cmd_submit)

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
