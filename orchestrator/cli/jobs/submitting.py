"""What `relay submit` of a run and of a sweep (`--tune`) share: the job's environment and stores, and following
the job to its end. Its own module so that the two commands' modules (``cluster``, ``sweep_job``) import it, not
each other."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator import jobs
from orchestrator.cli.common import EXIT_FAILED
from orchestrator.cli.run import run_locations
from orchestrator.config import ARTIFACT_URI_ENV, WORKSPACE_ENV
from orchestrator.engine.ledger import JOB_ADDRESS_ENV


def is_sweep(config: Any) -> bool:
    """Whether the config has a `tune:` section (`relay tune` searches it; `relay run` runs the base config)."""
    return getattr(config, "tune", None) is not None


def location_flags_env(args: argparse.Namespace) -> dict[str, str]:
    """--workspace / --artifact-uri of a new run, as the job's RELAY_WORKSPACE / RELAY_ARTIFACT_URI.

    The job resolves its stores on the cluster from its config and environment, so the flags
    reach it as those variables and rank as they do: below run.workspace / run.artifact_uri in
    the config, above the same variables in this shell.
    """
    flags = {WORKSPACE_ENV: args.workspace, ARTIFACT_URI_ENV: args.artifact_uri}
    return {name: value for name, value in flags.items() if value}


def job_address_env(address: str | None) -> dict[str, str]:
    """The cluster the job runs on, for its run record (``ledger.this_driver``): a later `relay resume` elsewhere
    checks the job there before it computes anything, and says how to resume the run on that cluster."""
    return {JOB_ADDRESS_ENV: jobs.resolve_address(address)}


def with_location_env(config: Any, env_vars: dict[str, str]) -> Any:
    """``config`` as the job will resolve it with ``env_vars`` set: what the durability check must see."""
    run = config.run.model_copy(
        update={
            "workspace": config.run.workspace or env_vars.get(WORKSPACE_ENV),
            "artifact_uri": config.run.artifact_uri or env_vars.get(ARTIFACT_URI_ENV),
        }
    )
    return config.model_copy(update={"run": run})


def local_paths(locations: run_locations.Locations) -> list[str]:
    """The folders and files behind the stores, so that the upload leaves them out (remote ones: none)."""
    uris = [locations.store, locations.tracking or ""]
    return [path for path in map(run_locations.local_path, uris) if path]


def follow(address: str | None, job_id: str) -> None:
    """Print the job's log as it comes, until it ends; Ctrl-C stops following, never the job.

    The job keeps running on the cluster, so the interrupt says so and how to pick it up, then
    propagates: main() answers it with exit 130, without a traceback.
    """
    try:
        for chunk in jobs.follow_logs(address, job_id):
            print(chunk, end="", flush=True)
    except KeyboardInterrupt:
        print(
            f"\nrelay: job {job_id} is still running on the cluster: follow it with `relay logs -f {job_id}`, "
            f"stop it with `relay stop {job_id}`",
            file=sys.stderr,
            flush=True,
        )
        raise


def follow_to_the_end(address: str | None, job_id: str) -> int:
    """Print the job's log as it comes, then exit like `ray job submit`: 0 if it SUCCEEDED, else 1."""
    follow(address, job_id)
    status, message = jobs.job_outcome(address, job_id)
    if status == "SUCCEEDED":
        return 0
    print(f"relay: job {job_id} {status}: {message.rstrip('. ')}; see `relay logs {job_id}`", file=sys.stderr)
    return EXIT_FAILED


def gpus_needed(args: argparse.Namespace, pipeline: Any) -> float:
    """The GPUs the stages need at once: --num-gpus, else the most one stage's workers ask for together."""
    if args.num_gpus is not None:
        return args.num_gpus
    return max((stage.resources.num_gpus * stage.resources.workers for stage in pipeline.stages), default=0.0)
