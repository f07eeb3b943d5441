"""Sending a pipeline to a cluster as a Ray job: the job request, its entrypoint, the ids of a run's jobs.

What the upload leaves out is ``upload``'s; whether the pipeline fits the cluster, ``capacity``'s. A config
file the upload does not hold (outside the working folder, or in a folder it leaves out) is sent as text with
the job, which writes it to a file of its own and runs that (``config_job``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import socket
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

# A config the upload does not hold travels as this variable of the job; the entrypoint writes it to a file.
CONFIG_TEXT_ENV = "RELAY_SUBMITTED_CONFIG"
# ... and where it came from, HOST:PATH on the machine that ran `relay submit`: the run records that, not its copy.
CONFIG_FROM_ENV = "RELAY_SUBMITTED_CONFIG_FROM"
# Linux caps one environment variable at 128 KiB (MAX_ARG_STRLEN), which the job's shell must be started with.
MAX_CONFIG_TEXT_BYTES = 100 * 1024


def relay_env_vars() -> dict[str, str]:
    """RELAY_* and MLFLOW_TRACKING_URI from this shell, so the job sees the same settings; not a config sent with a
    job this shell runs in (``config_job`` sets those for the config this job runs)."""
    sent = (CONFIG_TEXT_ENV, CONFIG_FROM_ENV)
    shared = (key for key in os.environ if key.startswith("RELAY_") or key == "MLFLOW_TRACKING_URI")
    return {key: os.environ[key] for key in shared if key not in sent}


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
    kind: str | None = None,
) -> str:
    """Submit a shell command with ``working_dir`` uploaded (but ``skip``, see build_runtime_env); returns the id.

    The entrypoint defaults to 0 CPUs and 0 GPUs: the driver only orchestrates and
    then runs on the head node, and every GPU stays free for the stages, which
    request their own resources. ``metadata`` shows in `ray job list` and the dashboard. ``kind`` is what the job
    is ('run', 'resume', 'sweep'; ``connection.TAKEN_BY``), so that an id taken meanwhile is explained as such.
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
        with translated_errors(url, submission_id, upload=str(folder.resolve()), kind=kind):
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

    The job runs inside the uploaded copy of ``working_dir``, so a config inside it is named relative to it; a path
    outside it is named as given, and must exist on the cluster (``config_path_warning``). ``config_job`` sends the
    text of a config file the upload does not hold instead.
    """
    root = Path(working_dir).expanduser().resolve()
    return _relay_command(command, _config_word(config_path, root), overrides, run_id, run_flags)


def _config_file(config_path: str, root: Path) -> Path:
    """The config file a path names: a relative one is relative to the folder the job uploads."""
    return (root / Path(config_path).expanduser()).resolve()


def _config_word(config_path: str, root: Path) -> str:
    """The config's path as the job reads it in its copy of ``root`` (one outside ``root`` as given), quoted."""
    path = _config_file(config_path, root)
    return shlex.quote(path.relative_to(root).as_posix() if path.is_relative_to(root) else config_path)


def _relay_command(
    command: str, config: str, overrides: list[str], run_id: str | None, run_flags: list[str] | None
) -> str:
    """``relay COMMAND CONFIG OVERRIDES... [--run-id ID] [FLAGS...]``, ``config`` as the shell is to read it."""
    rest = shlex.join([*overrides, *(["--run-id", run_id] if run_id else []), *(run_flags or [])])
    return f"relay {command} {config} {rest}".rstrip()


def _upload_problem(config_path: str, root: Path, skip: Iterable[str | None]) -> str | None:
    """``upload_problem`` with the excludes the job's upload will have (``build_runtime_env``)."""
    return upload_problem(config_path, root, build_runtime_env(str(root), {}, None, skip)["excludes"])


def upload_problem(config_path: str, root: Path, excludes: list[str]) -> str | None:
    """Why Ray's upload of ``root`` (less ``excludes``) would not hold the config file here, or None when it would.

    Asked as Ray packs a working_dir (``packaging._dir_travel``): its default excludes and ``excludes`` anchored at
    the root, and each .gitignore / .rayignore on the way down for what lies below it. Why: a config under
    ./relay-workspace (the header of a sweep's best.yaml names one) or ../ was sent by a path the job could not
    read, and the job failed on the cluster with "file not found" after `relay submit` had said nothing.
    """
    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE, get_runtime_env_default_excludes
    from ray._private.runtime_env.packaging import _get_excludes, get_excludes_from_ignore_files

    path = _config_file(config_path, root)
    if not path.is_relative_to(root):
        return f"{config_path} is outside {root}, the folder the job uploads"
    left_out = _get_excludes(root, [*get_runtime_env_default_excludes(), *excludes])
    gitignore = os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    ignored, folder = [], root
    for part in path.relative_to(root).parts:
        ignored += get_excludes_from_ignore_files(folder, include_gitignore=gitignore, logger=_SILENT)
        folder = folder / part
        if left_out(folder) or any(match(folder) for match in ignored):
            where = "it" if folder == path else f"{folder.relative_to(root)}/"
            return f"{config_path} is not uploaded with the job: the upload of {root} leaves {where} out"
    return None


_SILENT = logging.getLogger(f"{__name__}.ignore_files")  # Ray names each .gitignore it reads, at INFO
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())


def shipped_entrypoint(
    config_path: str,
    overrides: list[str],
    run_id: str | None = None,
    run_flags: list[str] | None = None,
    command: str = "run",
) -> str:
    """``pipeline_entrypoint``'s command for a config sent as CONFIG_TEXT_ENV: the job writes it to a new folder of its
    own under its temp dir, keeping the file's name, then runs it (``exec``: the signals of `relay stop` reach
    `relay` itself). Not in the job's working folder: Ray unpacks one copy of it for every job of the same code."""
    file = '"$folder"/' + shlex.quote(Path(config_path).name)
    written = f'folder=$(mktemp -d "${{TMPDIR:-/tmp}}/relay-config.XXXXXX") && printf %s "${CONFIG_TEXT_ENV}" > {file}'
    return f"{written} && exec {_relay_command(command, file, overrides, run_id, run_flags)}"


# ``shipped_entrypoint``'s shape: NAME is the file's name as ``shlex.quote`` wrote it, COMMAND the `relay ...` it execs.
SHIPPED_ENTRYPOINT = re.compile(
    r"""^folder=\$\(mktemp -d [^)]*\) && printf %s "\$\w+" > "\$folder"/"""
    r"""(?P<name>(?:'[^']*'|"'"|[^\s'"])+) && exec (?P<command>.*)$"""
)


def readable_entrypoint(entrypoint: str, env_vars: Mapping[str, str]) -> str:
    """A job's entrypoint as `relay jobs` shows it: for a config sent with the job (``shipped_entrypoint``), the
    `relay run FILE ...` it execs, FILE the file the user submitted (CONFIG_FROM_ENV); any other as it is.

    Why: the column showed the shell line that writes the file into a temp folder (``folder=$(mktemp -d ...) &&
    printf %s "$RELAY_SUBMITTED_CONFIG" > ...``), where the user looks for the command they submitted.
    """
    shipped = SHIPPED_ENTRYPOINT.match(entrypoint)
    if shipped is None:
        return entrypoint
    _, _, path = (env_vars.get(CONFIG_FROM_ENV) or "").partition(":")
    file = path or shlex.split(shipped["name"])[0]
    return shipped["command"].replace(f'"$folder"/{shipped["name"]}', shlex.quote(file), 1)


def config_job(
    config_path: str,
    overrides: list[str],
    working_dir: str,
    run_id: str | None = None,
    run_flags: list[str] | None = None,
    command: str = "run",
    skip: Iterable[str | None] = (),
) -> tuple[str, dict[str, str], str | None]:
    """The entrypoint that runs the config file, the job variables it needs (the file's text where the upload of
    ``working_dir`` but ``skip`` would not hold it, so that the file the user names is the one that runs), and what
    to say of the file once the job is sent (``say_where_the_config_went``).

    A file over MAX_CONFIG_TEXT_BYTES is refused (exit 2, nothing sent): a variable that large would stop the job's
    shell from starting.
    """
    root = Path(working_dir).expanduser().resolve()
    file = _config_file(config_path, root)
    problem = _upload_problem(config_path, root, skip) if file.is_file() else None
    if problem is None:  # in the upload, or a path this machine has no file at (``config_path_warning``)
        entrypoint = pipeline_entrypoint(config_path, overrides, working_dir, run_id, run_flags, command)
        return entrypoint, {}, config_path_warning(config_path, working_dir)
    text = file.read_text(encoding="utf-8")
    size = len(text.encode())
    if size > MAX_CONFIG_TEXT_BYTES:
        raise ConfigError(
            [
                f"{problem}, and at {size / 1024:.0f} KiB it is too large to send with the job (at most "
                f"{MAX_CONFIG_TEXT_BYTES // 1024} KiB): copy it into {root}, outside the folders the upload leaves out"
            ],
            "the command line",
        )
    sent = f"{problem}; its text is sent with the job, which runs it as it is now"
    named = os.path.normpath(root / Path(config_path).expanduser())  # as given: a link keeps the name it was given by
    env = {CONFIG_TEXT_ENV: text, CONFIG_FROM_ENV: f"{socket.gethostname()}:{named}"}
    return shipped_entrypoint(config_path, overrides, run_id, run_flags, command), env, sent


def submitted_config_origin(config_path: str) -> tuple[str, str] | None:
    """(host, path) of the file the user submitted, when ``config_path`` is the job's copy of a config sent with it
    (``config_job``); None for any other file (a config the upload held, a run not started by `relay submit`).

    Why: the run recorded the copy's path (``/tmp/relay-config.XXXXXX/x.yaml``) as its command's config, which MLflow
    showed as the run's source and command: a path that meant nothing to the user, on a machine they never saw. Told
    by content as well as by name: the variables reach whatever the job's driver starts, and only the file the
    entrypoint wrote from them holds their text.
    """
    origin, text = os.environ.get(CONFIG_FROM_ENV), os.environ.get(CONFIG_TEXT_ENV)
    if not origin or text is None:
        return None
    host, _, path = origin.partition(":")
    try:
        copied = Path(config_path).read_bytes() == text.encode("utf-8", "surrogateescape")
    except OSError:
        return None
    return (host, path) if copied and Path(config_path).name == Path(path).name else None


def say_where_the_config_went(note: str | None, config_env: Mapping[str, str]) -> None:
    """Once the job is sent, ``config_job``'s note: that the config's text went with it (INFO), or that the cluster
    must hold the file (``config_path_warning``, a warning). Not before: a refused submission's message would stand
    behind it."""
    if note:
        logger.log(logging.INFO if config_env else logging.WARNING, note)


def config_path_warning(config_path: str, working_dir: str) -> str | None:
    """What to warn of a config the upload of ``working_dir`` does not hold (the job reads it on the cluster), or None.

    Said once the job is submitted (``submit_pipeline``): before a refusal it only stood in front of the error. Only
    for a path that names no file here: a file here is uploaded or sent with the job (``config_job``).
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
    """``run_id`` when the cluster has no job of the run, else ``run_id-resume-N``, N one more than the run's highest.

    A resumed run keeps its id on a new cluster (the usual case after losing the head);
    on the cluster that already ran it, Ray refuses a second job with the same id. A job of
    the run that is still PENDING or RUNNING is refused (JobStillRunningError, exit 2): two
    drivers would write the same ledger and MLflow run. ``kind`` names what the id is of (a run, a sweep).
    Why the highest: `relay status/logs/stop RUN` act on the highest N (``latest_job_of``); after `ray job delete`
    of a middle job the first free N was a gap below it, and they acted on a job that had ended.
    """
    rows = list_jobs(address)
    check_no_active_job(rows, run_id, kind, address)
    numbers = [number for number, _ in _numbered_jobs(rows, run_id)]
    return f"{run_id}-resume-{max(numbers) + 1}" if numbers else run_id


def _numbered_jobs(rows: list[dict[str, Any]], run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """The jobs of ``run_id`` among ``rows`` with their number (1 for ``run_id`` itself, N for ``run_id-resume-N``),
    by number."""
    mine = re.compile(rf"{re.escape(run_id)}(?:-resume-(\d+))?")
    found = [(int(match.group(1) or 1), row) for row in rows if (match := mine.fullmatch(row["id"] or ""))]
    return sorted(found, key=lambda item: item[0])


def jobs_of_run(rows: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The jobs of ``run_id`` among ``rows``: its own id, then ``run_id-resume-N`` by N (the order they were submitted)."""
    return [row for _, row in _numbered_jobs(rows, run_id)]


def latest_job_of(rows: list[dict[str, Any]], run_id: str) -> str:
    """The id of the newest job of ``run_id`` (``run_id`` itself when the cluster has no resume of it)."""
    mine = jobs_of_run(rows, run_id)
    return mine[-1]["id"] if mine else run_id


def check_no_active_job(rows: list[dict[str, Any]], run_id: str, kind: str = "run", address: str | None = None) -> None:
    """Refuse a resume while a job of ``run_id`` (its own id or ``run_id-resume-N``) is PENDING or RUNNING.

    ``address`` is the --address the user gave (None: $RAY_ADDRESS), carried by every command the refusal names.
    """
    if (row := active_job(rows, run_id)) is not None:
        raise JobStillRunningError(_still_running_message(kind, run_id, row["id"], row["status"], address))


def active_job(rows: list[dict[str, Any]], run_id: str) -> dict[str, Any] | None:
    """The job of ``run_id`` among ``rows`` that is still PENDING or RUNNING, if any: a driver another would double."""
    return next((row for row in jobs_of_run(rows, run_id) if row["status"] in ACTIVE_STATUSES), None)


def _still_running_message(kind: str, run_id: str, job: str, status: str, address: str | None) -> str:
    """Why a job of ``run_id`` blocks another, and the way on.

    Why the stop in progress: Ray shows a stopped job RUNNING until its driver has exited (seconds for a run, up to
    a minute for a sweep, which gets its Ctrl-C), and Ray keeps no word of the stop; a resume sent right after
    `relay stop` was told to stop the job it had just stopped.
    """
    at = f" --address {address}" if address else ""
    stop_or_follow = f"stop it (`relay stop {job}{at}`) or follow it (`relay logs -f {job}{at}`)"
    said = f"{kind} {run_id} is still running as job {job} ({status})"
    if status != "RUNNING":
        return f"{said}; {stop_or_follow} first"
    return (
        f"{said}; if you have just stopped it, the stop may still be in progress (Ray shows a stopped job RUNNING until "
        f"its driver exits: seconds for a run, up to a minute for a sweep): wait until `relay status {job}{at}` "
        f"shows STOPPED, then submit again; otherwise {stop_or_follow} first"
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
    A config the upload would not hold is sent with the job (``config_job``).
    """
    url = resolve_address(address)
    check_amounts(num_gpus=num_gpus)
    entrypoint, config_env, config_note = config_job(
        config_path, overrides, working_dir, run_id=submission_id, run_flags=run_flags, skip=skip
    )
    asked = {**(needs or {}), "GPU": num_gpus} if check_resources else None
    _check_before_upload(url, submission_id, asked, workers or {})
    if note:
        print(note, file=sys.stderr, flush=True)
    job_id = submit_entrypoint(
        url,
        entrypoint,
        working_dir,
        submission_id=submission_id,
        env_vars={**relay_env_vars(), **(env_vars or {}), **config_env},
        pip=extra_pip,
        metadata=metadata,
        skip=skip,
        kind="run",
    )
    say_where_the_config_went(config_note, config_env)
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
