"""Sending a pipeline to a cluster as a Ray job: the job request, its entrypoint, the ids of a run's jobs.

What the upload leaves out is ``upload``'s; whether the pipeline fits the cluster, ``capacity``'s.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.jobs.capacity import check_cluster_resources, check_workers_fit
from orchestrator.jobs.connection import (
    JobsError,
    JobStillRunningError,
    UploadTooLargeError,
    check_job_id_free,
    connect,
    resolve_address,
    translated_errors,
)
from orchestrator.jobs.upload import build_runtime_env, largest_uploaded, quiet_upload
from orchestrator.jobs.watch import ACTIVE_STATUSES, list_jobs

logger = logging.getLogger(__name__)


def relay_env_vars() -> dict[str, str]:
    """RELAY_* and MLFLOW_TRACKING_URI from this shell, so the job sees the same settings."""
    return {key: value for key, value in os.environ.items() if key.startswith("RELAY_") or key == "MLFLOW_TRACKING_URI"}


def resource_problem(key: str, value: object) -> str | None:
    """Why ``value`` is not a resource amount (a finite number >= 0: 0.5 GPU is fine), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return f"{key}: expected a finite number >= 0 (e.g. 1 or 0.5), got {value!r}; pass a count, or 0 for none"
    return None


def check_amounts(**amounts: object) -> None:
    """Refuse (ConfigError, exit 2) negative, NaN or infinite resource amounts before the cluster is asked."""
    problems = [resource_problem(key.replace("_", "-"), value) for key, value in amounts.items()]
    problems = [problem for problem in problems if problem]
    if problems:
        raise ConfigError(problems, "the job request")


def submit_entrypoint(
    address: str | None,
    entrypoint: str,
    working_dir: str,
    submission_id: str | None = None,
    env_vars: dict[str, str] | None = None,
    pip: list[str] | None = None,
    entrypoint_num_cpus: float = 0,
    entrypoint_num_gpus: float = 0,
    metadata: dict[str, str] | None = None,
    skip: Iterable[str | None] = (),
) -> str:
    """Submit a shell command with ``working_dir`` uploaded (but ``skip``, see build_runtime_env); returns the id.

    The entrypoint defaults to 0 CPUs and 0 GPUs: the driver only orchestrates and
    then runs on the head node, and every GPU stays free for the stages, which
    request their own resources. ``metadata`` shows in `ray job list` and the dashboard.
    """
    url = resolve_address(address)
    check_amounts(entrypoint_num_cpus=entrypoint_num_cpus, entrypoint_num_gpus=entrypoint_num_gpus)
    folder = Path(working_dir).expanduser()
    if not folder.is_dir():
        raise JobsError(f"working_dir {working_dir!r} is not a folder: pass the project root to upload")
    runtime_env = build_runtime_env(str(folder.resolve()), env_vars or {}, pip, skip)
    client = connect(url)
    try:
        quiet_upload()
        with translated_errors(url, submission_id, upload=str(folder.resolve())):
            job_id = client.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                submission_id=submission_id,
                entrypoint_num_cpus=entrypoint_num_cpus or None,
                entrypoint_num_gpus=entrypoint_num_gpus or None,
                metadata=dict(metadata or {}),
            )
    except UploadTooLargeError as exc:  # name what made it large: the user cannot see what Ray packed
        raise UploadTooLargeError(f"{exc}; {largest_uploaded(folder.resolve(), runtime_env['excludes'])}") from exc
    logger.info("submitted %s to %s: %s", job_id, url, entrypoint)
    return job_id


def pipeline_entrypoint(
    config_path: str,
    overrides: list[str],
    working_dir: str,
    run_id: str | None = None,
    run_flags: list[str] | None = None,
    command: str = "run",
) -> str:
    """``relay run <config> <overrides...> [--run-id ID] [run_flags...]``, quoted; the config path made relative
    to the upload. ``run_flags`` are more options of the command (`--rerun-from STAGE`, `--no-cache`);
    ``command`` is `tune` for a sweep's job.

    The job runs inside the uploaded copy of ``working_dir``, so a config inside it
    must be named relative to it; a path outside it must exist on the cluster (``config_path_warning``).
    """
    config = Path(config_path).expanduser()
    root = Path(working_dir).expanduser().resolve()
    if config.is_absolute():
        with contextlib.suppress(ValueError):  # outside the upload: named as given
            config = config.resolve().relative_to(root)
    run_id_flag = ["--run-id", run_id] if run_id else []
    return shlex.join(["relay", command, config.as_posix(), *overrides, *run_id_flag, *(run_flags or [])])


def config_path_warning(config_path: str, working_dir: str) -> str | None:
    """What to warn of a config the upload of ``working_dir`` does not hold (the job reads it on the cluster), or None.

    Said once the job is submitted (``submit_pipeline``): before a refusal it only stood in front of the error.
    """
    config = Path(config_path).expanduser()
    root = Path(working_dir).expanduser().resolve()
    if config.is_absolute() and not config.resolve().is_relative_to(root):
        return f"{config_path} is outside {root}: it must exist on the cluster"
    if not config.is_absolute() and not (root / config).is_file():
        return f"{config_path} not found under {root}: it must exist on the cluster"
    return None


def resume_entrypoint(run_id: str, store_uri: str) -> str:
    """``relay resume RUN_ID --artifact-uri STORE``: the run record is read from the store on the cluster."""
    return shlex.join(["relay", "resume", run_id, "--artifact-uri", store_uri])


def free_submission_id(address: str | None, run_id: str, kind: str = "run") -> str:
    """``run_id`` when the cluster has no job by that id, else ``run_id-resume-N`` with the first free N.

    A resumed run keeps its id on a new cluster (the usual case after losing the head);
    on the cluster that already ran it, Ray refuses a second job with the same id. A job of
    the run that is still PENDING or RUNNING is refused (JobStillRunningError, exit 2): two
    drivers would write the same ledger and MLflow run. ``kind`` names what the id is of (a run, a sweep).
    """
    rows = list_jobs(address)
    check_no_active_job(rows, run_id, kind)
    taken = {row["id"] for row in rows}
    if run_id not in taken:
        return run_id
    return next(f"{run_id}-resume-{n}" for n in itertools.count(2) if f"{run_id}-resume-{n}" not in taken)


def jobs_of_run(rows: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The jobs of ``run_id`` among ``rows``: its own id, then ``run_id-resume-N`` by N (the order they were submitted)."""
    mine = re.compile(rf"{re.escape(run_id)}(?:-resume-(\d+))?")
    found = [(match, row) for row in rows if (match := mine.fullmatch(row["id"] or ""))]
    return [row for match, row in sorted(found, key=lambda item: int(item[0].group(1) or 1))]


def latest_job_of(rows: list[dict[str, Any]], run_id: str) -> str:
    """The id of the newest job of ``run_id`` (``run_id`` itself when the cluster has no resume of it)."""
    mine = jobs_of_run(rows, run_id)
    return mine[-1]["id"] if mine else run_id


def check_no_active_job(rows: list[dict[str, Any]], run_id: str, kind: str = "run") -> None:
    """Refuse a resume while a job of ``run_id`` (its own id or ``run_id-resume-N``) is PENDING or RUNNING."""
    for row in jobs_of_run(rows, run_id):
        if row["status"] in ACTIVE_STATUSES:
            job = row["id"]
            raise JobStillRunningError(
                f"{kind} {run_id} is still running as job {job} ({row['status']}); stop it first "
                f"(`relay stop {job}`) or follow it (`relay logs -f {job}`)"
            )


def submit_pipeline(
    address: str | None,
    config_path: str,
    overrides: list[str],
    working_dir: str,
    submission_id: str | None = None,
    extra_pip: list[str] | None = None,
    num_gpus: float = 0,
    check_resources: bool = True,
    needs: Mapping[str, float] | None = None,
    workers: Mapping[str, Mapping[str, float]] | None = None,
    metadata: dict[str, str] | None = None,
    run_flags: list[str] | None = None,
    env_vars: dict[str, str] | None = None,
    skip: Iterable[str | None] = (),
    note: str | None = None,
) -> str:
    """Run ``relay run <config> <overrides> --run-id ID [run_flags]`` on the cluster as a Ray job; returns its id.

    The submission id is the run id (one id for Ray, Relay and MLflow), so `relay status ID`
    and `ray job status ID` name the same job. ``num_gpus`` is what the pipeline's stages
    need in total at once; it is checked against the cluster with ``needs`` (what one stage needs of
    the other resources to start) unless ``check_resources`` is off, and never reserved for the driver;
    so is ``workers`` (stage -> what one worker asks, ``worker_requests``) against the largest node.
    ``env_vars`` are added to this shell's RELAY_* variables; ``skip`` is not uploaded. ``note`` is said on
    stderr once the cluster's checks pass, before the upload: what the user should know about this job.
    """
    url = resolve_address(address)
    check_amounts(num_gpus=num_gpus)
    entrypoint = pipeline_entrypoint(config_path, overrides, working_dir, run_id=submission_id, run_flags=run_flags)
    asked = {**(needs or {}), "GPU": num_gpus} if check_resources else None
    _check_before_upload(url, submission_id, asked, workers or {})
    if note:
        print(note, file=sys.stderr, flush=True)
    job_id = submit_entrypoint(
        url,
        entrypoint,
        working_dir,
        submission_id=submission_id,
        env_vars={**relay_env_vars(), **(env_vars or {})},
        pip=extra_pip,
        metadata=metadata,
        skip=skip,
    )
    warning = config_path_warning(config_path, working_dir)
    if warning:
        logger.warning(warning)
    return job_id


def _check_before_upload(
    url: str, submission_id: str | None, needs: Mapping[str, float] | None, workers: Mapping[str, Mapping[str, float]]
) -> None:
    """What the cluster must answer before the upload, which can take minutes: it lets this client in, the job id
    is free and, unless the check is skipped (``needs`` None), it can hold the pipeline's stages and workers."""
    client = connect(url)  # clear auth/reachability errors before anything else
    if submission_id is not None:
        check_job_id_free(client, url, submission_id)  # before the upload: Ray checks it only after
    if needs is not None:
        check_cluster_resources(url, needs)
        check_workers_fit(url, workers)
