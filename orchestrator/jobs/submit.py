"""Sending a pipeline to a cluster as a Ray job: the upload, the entrypoint, the GPU check."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.engine.demands import amounts_text, resource_key, shortfall
from orchestrator.errors import ConfigError
from orchestrator.jobs.connection import (
    InsufficientResourcesError,
    JobsError,
    JobStillRunningError,
    UploadTooLargeError,
    _get_json,
    _translated,
    auth_headers,
    check_job_id_free,
    connect,
    resolve_address,
)
from orchestrator.jobs.watch import ACTIVE_STATUSES, list_jobs

T = TypeVar("T")
logger = logging.getLogger(__name__)
# How long a resource check waits for the cluster's report to show what a stage needs: right after `ray start`
# the dashboard's report lists no node for a few seconds, and right after more nodes join it lists only some
# (a submit then said a cluster of 2 CPU workers and a 0-CPU head had 0 CPU). A cluster that is short for
# good is said so after this wait.
NODES_REPORT_WAIT_S = 15
# A session folder Ray makes in its temp dir (session_<date>_<time>_<pid>), or session_latest, Ray's link to the
# newest one: a path through either is deleted with the session.
RAY_SESSION = re.compile(r"^session_(?:latest$|\d{4}-\d{2}-\d{2}_)")

# Never upload these with the working_dir: local environments, local run
# outputs and databases are large and meaningless on the cluster. A sqlite store
# comes with side files (its .lock, SQLite's journal, WAL and shared-memory files)
# and, beside it, the folder where Relay keeps its MLflow artifacts
# (orchestrator.tracking.common.ARTIFACTS_FOLDER, which this layer may not import).
WORKING_DIR_EXCLUDES = [
    ".venv",
    "relay-workspace",
    ".git",
    "benchmarks/results",
    "*.db",
    "*.db.lock",
    "*.db-journal",
    "*.db-wal",
    "*.db-shm",
    "mlartifacts",
    "mlruns",
    "__pycache__",
    ".pytest_cache",
]


def relay_env_vars() -> dict[str, str]:
    """RELAY_* and MLFLOW_TRACKING_URI from this shell, so the job sees the same settings."""
    return {key: value for key, value in os.environ.items() if key.startswith("RELAY_") or key == "MLFLOW_TRACKING_URI"}


def inside_excludes(working_dir: str, paths: Iterable[str | None]) -> list[str]:
    """``/REL`` for each of ``paths`` inside ``working_dir``: Ray excludes, anchored at the upload's root.

    A shared workspace or Ray's temp folder kept in the project folder would otherwise be uploaded
    with the code and push the request over Ray's 100 MiB limit (413). The leading ``/`` keeps a
    pattern from matching a same-named folder deeper in the code; the folder itself is never excluded.
    """
    root = Path(working_dir).expanduser().resolve()
    excludes = []
    for path in paths:
        if not path:
            continue
        resolved = (root / Path(path).expanduser()).resolve()
        if resolved != root and root in resolved.parents:
            excludes.append("/" + resolved.relative_to(root).as_posix())
    return sorted(set(excludes))


def workspaces_inside(working_dir: str, depth: int = 2) -> list[str]:
    """Relay workspaces (a folder holding ``artifacts/runs``) up to ``depth`` levels inside ``working_dir``.

    Why: only the workspace and stores of this submission were left out of the upload, so a
    project folder holding the workspaces of other runs (checkpoints of 40 MB each) went over
    Ray's 100 MiB limit. Hidden folders and those already excluded by name are not searched.
    """
    return folders_inside(working_dir, lambda folder: (folder / "artifacts" / "runs").is_dir(), depth)


def is_ray_temp_dir(folder: Path) -> bool:
    """A Ray temp dir (``ray start --temp-dir``): it holds ``session_latest`` or a ``session_<date>_...`` folder."""
    if (folder / "session_latest").exists():
        return True
    try:
        return any(RAY_SESSION.match(entry.name) and entry.is_dir() for entry in folder.iterdir())
    except OSError:
        return False


def ray_temp_dirs_inside(working_dir: str, depth: int = 2) -> list[str]:
    """Ray temp dirs up to ``depth`` levels inside ``working_dir``, found by their content, whatever their name.

    Why: a `ray start --temp-dir` inside the project folder was uploaded with the code, and its
    session logs grow until the upload is over Ray's 100 MiB limit; $RAY_TMPDIR is not set for it.
    """
    return folders_inside(working_dir, is_ray_temp_dir, depth)


def folders_inside(working_dir: str, wanted: Callable[[Path], bool], depth: int) -> list[str]:
    """The folders up to ``depth`` levels inside ``working_dir`` that are ``wanted`` (not searched further).

    Hidden folders, symlinks and those excluded by name are not searched.
    """
    found: list[str] = []
    level = [Path(working_dir).expanduser()]
    for _ in range(depth):
        children = []
        for folder in level:
            try:
                entries = [entry for entry in folder.iterdir() if entry.is_dir() and not entry.is_symlink()]
            except OSError:  # unreadable: Ray's upload will say so
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.name in WORKING_DIR_EXCLUDES:
                    continue
                if wanted(entry):
                    found.append(str(entry))
                else:
                    children.append(entry)
        level = children
    return found


def build_runtime_env(
    working_dir: str, env_vars: dict[str, str], pip: list[str] | None, skip: Iterable[str | None] = ()
) -> dict[str, Any]:
    """The job's runtime_env: the code to upload (minus local clutter), env vars, extra pip.

    ``skip`` names local folders (workspace, stores) to leave out when they lie inside the upload;
    $RAY_TMPDIR is always one of them.
    """
    skipped = inside_excludes(
        working_dir,
        [*skip, os.environ.get("RAY_TMPDIR"), *workspaces_inside(working_dir), *ray_temp_dirs_inside(working_dir)],
    )
    runtime_env: dict[str, Any] = {
        "working_dir": working_dir,
        "excludes": [*WORKING_DIR_EXCLUDES, *skipped],
        "env_vars": dict(env_vars),
    }
    if pip:
        runtime_env["pip"] = list(pip)
    return runtime_env


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


def largest_uploaded(root: Path, excludes: list[str], count: int = 3) -> str:
    """The ``count`` largest folders of ``root`` as Ray uploads it (``excludes`` left out), e.g. ``data (800 MiB)``.

    Why: "over Ray's 100 MiB limit" alone left the user to hunt for what was packed. Measured
    with Ray's own matcher for the excludes, only after an upload was refused. A link to a folder is
    followed, as Ray's packing follows it (a virtualenv linked into the project was packed whole while
    this list named only the small folders), each real folder once.
    """
    from ray._private.runtime_env.packaging import _get_excludes

    excluded = _get_excludes(root, excludes)
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        seen.add(os.path.realpath(here))
        dirs[:] = [name for name in dirs if not excluded(here / name) and os.path.realpath(here / name) not in seen]
        if here == root:
            continue
        top = here.relative_to(root).parts[0]
        for name in files:
            with contextlib.suppress(OSError):
                if not excluded(here / name):
                    sizes[top] = sizes.get(top, 0) + (here / name).lstat().st_size
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:count]
    if not largest:
        return "its files are large, not its folders"
    listed = ", ".join(f"{name}/ ({size / 2**20:.0f} MiB)" for name, size in largest)
    return f"its largest folders: {listed}"


UPLOAD_LOGGERS = (  # the loggers of Ray's packing and upload of a working_dir, by module
    "ray._private.runtime_env.packaging",
    "ray._private.runtime_env.working_dir",
    "ray.dashboard.modules.dashboard_sdk",
)
DEFAULT_EXCLUDE_ADVICE = "is now ignored by default when packaging the working directory"


class _UploadNoise(logging.Filter):
    """Drops Ray's INFO lines about packing and pushing the upload, and its advice on its default excludes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and DEFAULT_EXCLUDE_ADVICE not in record.getMessage()


def quiet_upload() -> None:
    """Keep Ray's 8-12 lines per submit off stderr as it packs and uploads the working_dir; its errors pass.

    Why: `Ignoring upload to cluster for these files: [.../.gitignore]` six times, `Creating a file package`,
    `Uploading package gcs://...` said nothing a user acts on, and `Directory '.venv' is now ignored by default
    ... set RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES=''` advised what would upload the virtualenv (Relay's own
    excludes leave it out, and an upload over Ray's limit is refused with its largest folders). Set once per
    process: these loggers log nothing else a `relay` command shows.
    """
    for name in UPLOAD_LOGGERS:
        upload_logger = logging.getLogger(name)
        if not any(isinstance(each, _UploadNoise) for each in upload_logger.filters):
            upload_logger.addFilter(_UploadNoise())


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
        with _translated(url, submission_id, upload=str(folder.resolve())):
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


def _once_reported(read: Callable[[], T | None], lacking: Callable[[T], bool]) -> T | None:
    """``read()`` again each second, up to NODES_REPORT_WAIT_S, while what it reports is ``lacking``; None if unread.

    Why: the dashboard's report lags the cluster: nodes that joined seconds ago are not in it yet.
    """
    value = read()
    waited = 0
    while value is not None and lacking(value) and waited < NODES_REPORT_WAIT_S:
        time.sleep(1.0)
        waited += 1
        value = read()
    return value


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


def cluster_totals(address: str) -> dict[str, float] | None:
    """Total of every resource the cluster reports now (CPU, GPU, custom), from /api/cluster_status; None if
    it cannot say.

    ``ray.cluster_resources()`` needs a driver connection, which a Jobs client
    does not have; the dashboard's autoscaler report carries the same totals.
    """
    body = _get_json(address, "/api/cluster_status", auth_headers())  # keys as resource_key makes them
    status = ((body or {}).get("data") or {}).get("clusterStatus") or {}
    report = status.get("loadMetricsReport") or status.get("load_metrics_report")
    if not isinstance(report, dict) or not isinstance(report.get("usage"), dict):
        return None
    return {resource_key(key): float(used_total[1]) for key, used_total in report["usage"].items() if used_total}


def check_cluster_resources(address: str, needs: Mapping[str, float]) -> None:
    """Fail now when the cluster has less of a resource than one stage needs to start, instead of a job
    whose stage waits forever (``needs``: resource -> amount, e.g. from ``orchestrator.engine.fit.cluster_needs``)."""
    needs = {key: amount for key, amount in needs.items() if amount > 0}
    if not needs:
        return
    totals = _once_reported(
        lambda: cluster_totals(address), lambda totals: bool(shortfall(needs, totals, key=resource_key))
    )
    if totals is None:
        logger.warning("could not read the resources of %s (/api/cluster_status); not checked", address)
        return
    short = shortfall(needs, totals, key=resource_key)
    if not short:
        return
    has = ", ".join(f"{totals.get(resource_key(key), 0.0):g} {key}" for key in short)
    asks = ", ".join(f"{amount:g} {key}" for key, amount in short.items())
    fix = (
        "start GPU workers (ray up with min_workers >= 1 for the GPU node type, or scale the KubeRay GPU "
        "worker group), ask for fewer GPUs, "
        if "GPU" in short
        else "add nodes that have them (`ray start --num-cpus N --resources '{...}'`), lower the stages' resources, "
    )
    raise InsufficientResourcesError(
        f"the Ray cluster at {address} has {has}, the pipeline asks for {asks} at once: {fix}"
        "or skip this check (--skip-resource-check) for an autoscaling cluster that starts nodes on demand"
    )


def worker_requests(stages: Iterable[Any]) -> dict[str, dict[str, float]]:
    """Stage name -> what one of its workers asks of each resource (CPU, GPU, custom; amounts above 0).

    A worker is Ray's unit of placement (a task, a Ray Train worker, a labeling actor): it runs on
    one node, so it must fit on one, whatever the cluster has in total.
    """
    requests = {}
    for stage in stages:
        resources = stage.resources
        asked = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, **dict(resources.custom)}
        requests[stage.name] = {key: float(amount) for key, amount in asked.items() if amount > 0}
    return requests


def node_resources(address: str) -> list[dict[str, float]] | None:
    """The total resources of each alive node (the state API behind `ray list nodes`), or None if it cannot say."""
    body = _get_json(address, "/api/v0/nodes?limit=10000&detail=1", auth_headers())
    result = ((body or {}).get("data") or {}).get("result") or {}
    rows = result.get("result") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return None
    return [
        {resource_key(key): float(amount) for key, amount in (row.get("resources_total") or {}).items()}
        for row in rows
        if isinstance(row, dict) and row.get("state") == "ALIVE"
    ]


def largest_node(nodes: list[Mapping[str, float]], keys: Iterable[str]) -> dict[str, float]:
    """The most any one node has of each of ``keys`` (resource names as a config writes them)."""
    return {key: max((node.get(resource_key(key), 0.0) for node in nodes), default=0.0) for key in keys}


def oversized_workers(requests: Mapping[str, Mapping[str, float]], nodes: list[Mapping[str, float]]) -> list[str]:
    """One line per request no single node can hold, naming its stages, what a worker asks and the largest node.

    Why: Ray places each worker on one node, so two 1-CPU nodes cannot run a worker asking for 2
    CPUs; a check against the cluster's totals passed it and the job waited forever ("No
    available node types can fulfill resource request").
    """
    nodes = [
        {resource_key(key): amount for key, amount in node.items()} for node in nodes
    ]  # as Ray or a report names them
    stages: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for name, asked in requests.items():
        if asked and all(shortfall(asked, node, key=resource_key) for node in nodes):
            stages.setdefault(tuple(sorted(asked.items())), []).append(name)
    problems = []
    for asked, names in stages.items():
        largest = largest_node(nodes, dict(asked))
        role = names[0].rsplit("/", 1)[-1]
        problems.append(
            f"{', '.join(names)}: one worker asks for {amounts_text(dict(asked))}, and no node of the cluster has that "
            f"much (the largest has {amounts_text(largest)}); a worker runs on one node: lower the stage's resources "
            f"(e.g. resources.{role}.num_cpus; more workers share the work), or add a node that large "
            "(`ray start --num-cpus N --num-gpus N`)"
        )
    return problems


def check_workers_fit(address: str, requests: Mapping[str, Mapping[str, float]]) -> None:
    """Refuse (exit 2) a pipeline one of whose workers no node of the cluster can hold (``oversized_workers``).

    Waits, like ``check_cluster_resources``, for a report that lists nodes that joined seconds ago.
    """
    if not any(requests.values()):
        return
    nodes = _once_reported(lambda: node_resources(address), lambda nodes: bool(oversized_workers(requests, nodes)))
    if nodes is None:
        logger.warning("could not read the nodes of %s (/api/v0/nodes); not checked that each worker fits one", address)
        return
    problems = oversized_workers(requests, nodes)
    if problems:
        raise InsufficientResourcesError(
            f"the Ray cluster at {address} has no node large enough for "
            + "; ".join(problems)
            + "; or skip this check (--skip-resource-check) for an autoscaling cluster that starts larger nodes"
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
    client = connect(url)  # clear auth/reachability errors before anything else
    if submission_id is not None:
        check_job_id_free(client, url, submission_id)  # before the upload: Ray checks it only after
    if check_resources:
        check_cluster_resources(url, {**(needs or {}), "GPU": num_gpus})
        check_workers_fit(url, workers or {})
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


# --------------------------------------------------------------------------- watch
