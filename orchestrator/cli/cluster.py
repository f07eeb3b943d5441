"""`relay submit|status|logs|stop|jobs`: pipeline runs as Ray jobs on a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator import jobs
from orchestrator.cli.common import add_address, load_pipeline_config, pipelines_of


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate locally (bad input never reaches the cluster), then submit `relay run` as a Ray job.

    The config's folders are the cluster's, so only what does not depend on this machine's
    folders is checked here; the job's `relay run` checks the rest before it writes.
    """
    jobs.resolve_address(args.address)  # no address is bad input: say so before reading the data
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args), local=False)
    needed = (
        args.num_gpus
        if args.num_gpus is not None
        else max((s.resources.num_gpus * s.resources.workers for s in spec.build(config).stages), default=0.0)
    )
    job_id = jobs.submit_pipeline(
        args.address,
        args.config,
        args.overrides,
        str(Path.cwd()),
        submission_id=args.submission_id,
        num_gpus=needed,
        check_resources=not args.skip_resource_check,
    )
    print(job_id)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(jobs.job_status(args.address, args.job_id))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    if args.follow:
        for chunk in jobs.follow_logs(args.address, args.job_id):
            print(chunk, end="", flush=True)
    else:
        print(jobs.job_logs(args.address, args.job_id), end="")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    stopped = jobs.stop_job(args.address, args.job_id)
    print(f"{args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    rows = jobs.list_jobs(args.address)
    for row in rows:
        print(f"{row['id']}  {row['status']:<10} {row.get('start_time') or '-':<25} {row['entrypoint']}")
    if not rows:
        print("no jobs on this cluster yet: submit one with `relay submit CONFIG --address ...`")
    return 0


def register(commands: Any) -> None:
    submit = commands.add_parser("submit", help="run a pipeline file on a Ray cluster as a Ray job")
    submit.add_argument("config")
    submit.add_argument("overrides", nargs="*")
    add_address(submit)
    submit.add_argument("--submission-id", help="job id (default: chosen by Ray); duplicates are rejected")
    submit.add_argument(
        "--num-gpus", type=float, help="GPUs the stages need at once (default: from the config's resources)"
    )
    submit.add_argument(
        "--skip-resource-check",
        action="store_true",
        help="do not compare --num-gpus with the cluster (autoscaling clusters)",
    )
    submit.set_defaults(handler=cmd_submit)

    for name, handler, text in (("status", cmd_status, "a job's status"), ("stop", cmd_stop, "stop a running job")):
        command = commands.add_parser(name, help=text)
        command.add_argument("job_id")
        add_address(command)
        command.set_defaults(handler=handler)

    logs = commands.add_parser("logs", help="a job's driver log")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    add_address(logs)
    logs.set_defaults(handler=cmd_logs)

    listing = commands.add_parser("jobs", help="list the cluster's jobs")
    add_address(listing)
    listing.set_defaults(handler=cmd_jobs)
