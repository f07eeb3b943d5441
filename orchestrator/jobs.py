"""Ray Jobs: send a pipeline to a cluster, then watch, read and stop it.

`relay submit / status / logs / stop / jobs` are thin shells over these plain
functions. Each one takes the dashboard address (``http://HOST:8265``), talks to
the cluster's Jobs server over HTTP and turns every failure into one
``RelayError`` that says what to do. Ray is imported inside the functions so
that ``relay --help`` does not pay for it.

Token authentication (Ray 2.59+): a cluster started while a token exists
(``ray get-auth-token --generate`` writes ``~/.ray/auth_token``; ``ray.init()``
local clusters create one) rejects requests without ``Authorization: Bearer``.
Ray's client reads ``RAY_AUTH_MODE`` only once, when ``ray._raylet`` is first
imported, so setting it later in the same process has no effect. We therefore
resolve the token ourselves (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
``~/.ray/auth_token``, in Ray's own order) and pass the header explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputError, RelayError, SettingError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

logger = logging.getLogger(__name__)

DEFAULT_DASHBOARD_PORT = 8265
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# Never upload these with the working_dir: local environments, local run
# outputs and databases are large and meaningless on the cluster.
WORKING_DIR_EXCLUDES = [
    ".venv",
    "relay-workspace",
    ".git",
    "benchmarks/results",
    "*.db",
    "mlruns",
    "__pycache__",
    ".pytest_cache",
]
PROBE_TIMEOUT_S = 5.0
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


class JobsError(RelayError):
    """A Ray Jobs request failed; the message says what to do."""


class AddressError(JobsError, InputError):
    """No cluster address, or one that is not a Jobs server URL: bad input (exit 2), not a cluster failure."""


class ClusterUnreachableError(JobsError):
    """Nothing answering as a Ray Jobs server at the address."""


class AuthTokenError(JobsError):
    """The cluster wants a token and we sent none, or the wrong one."""


class NotADashboardError(JobsError, SettingError):
    """Something answers at the address, but not a Ray dashboard (a wrong port, another server)."""


class JobNotFoundError(JobsError):
    """The cluster knows no job with this id."""


class InsufficientGpusError(JobsError):
    """The cluster has fewer GPUs than the pipeline needs (it would sit in PENDING)."""


class JobTimeoutError(JobsError):
    """A job did not reach a terminal status in time."""


# --------------------------------------------------------------------------- address


def resolve_address(address: str | None) -> str:
    """The Jobs server URL from the argument, else $RAY_ADDRESS; ``host:port`` gets ``http://``."""
    value = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if not value:
        raise AddressError(
            "no Ray cluster address: pass --address http://HOST:8265 (the dashboard of the "
            "head node) or set RAY_ADDRESS=http://HOST:8265"
        )
    if value.startswith("ray://") or value == "auto":
        raise AddressError(
            f"address {value!r} is a Ray client/GCS address; Relay submits through the Jobs "
            f"server: pass --address http://HOST:{DEFAULT_DASHBOARD_PORT} (the dashboard port)"
        )
    if "://" not in value:
        value = f"http://{value}"
    return value.rstrip("/")


# --------------------------------------------------------------------------- token auth


def default_token_path() -> Path:
    """Where ``ray get-auth-token --generate`` and ``ray.init()`` keep the token."""
    return Path.home() / ".ray" / "auth_token"


def _read_token_file(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def find_auth_token() -> str | None:
    """The token a Ray client would use, in Ray's order; None if disabled or absent.

    Side effect, on purpose: when neither RAY_AUTH_MODE nor RAY_AUTH_TOKEN is set
    and ``~/.ray/auth_token`` exists, RAY_AUTH_MODE=token is set so that Ray code
    started later from this process (the ``ray`` CLI, a fresh interpreter)
    authenticates the same way.
    """
    mode = os.environ.get(AUTH_MODE_ENV, "").strip().lower()
    if mode == "disabled":
        return None
    token = os.environ.get(AUTH_TOKEN_ENV, "").strip()
    if token:
        return token
    token_path = os.environ.get(AUTH_TOKEN_PATH_ENV)
    if token_path:
        return _read_token_file(Path(token_path).expanduser())
    token = _read_token_file(default_token_path())
    if token and not mode:
        os.environ[AUTH_MODE_ENV] = "token"
        logger.debug("using %s; set %s=token", default_token_path(), AUTH_MODE_ENV)
    return token


def auth_headers() -> dict[str, str]:
    """The Authorization header for the Jobs server, or none when there is no token."""
    token = find_auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _missing_token_message(address: str) -> str:
    return (
        f"the Ray cluster at {address} requires a token and none was found: set "
        f"RAY_AUTH_TOKEN=<token> (on the head node: `ray get-auth-token`), or copy the head's "
        f"~/.ray/auth_token to this machine and set RAY_AUTH_MODE=token "
        f"(or RAY_AUTH_TOKEN_PATH=<file>)"
    )


def _wrong_token_message(address: str) -> str:
    return (
        f"the Ray cluster at {address} rejected the token: set RAY_AUTH_TOKEN to the "
        f"cluster's token (on the head node: `ray get-auth-token`) or replace "
        f"~/.ray/auth_token / $RAY_AUTH_TOKEN_PATH with the head's copy"
    )


def _unreachable_message(address: str) -> str:
    return (
        f"no Ray Jobs server at {address}: is the cluster up (ray start --head / ray up) "
        f"and the dashboard port {DEFAULT_DASHBOARD_PORT} reachable? (pip install "
        f"'ray[default]' on the head; through a tunnel: ray dashboard cluster.yaml)"
    )


# --------------------------------------------------------------------------- connection


def _get_json(address: str, path: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """GET a dashboard endpoint with a timeout (Ray's client has none); None if not JSON/200."""
    import requests

    try:
        response = requests.get(f"{address}{path}", headers=headers, timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.RequestException as exc:
        raise ClusterUnreachableError(_unreachable_message(address)) from exc
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def check_dashboard(address: str) -> str:
    """The cluster's Ray version; raises NotADashboardError when whatever answers is not a Ray dashboard.

    Ray's client would otherwise fail later with a JSON or 404 error that does not say the
    address is wrong (an MLflow server, a Grafana, the GCS port mistaken for the dashboard).
    """
    body = _get_json(address, "/api/version", auth_headers())
    version = (body or {}).get("ray_version") if isinstance(body, dict) else None
    if not version:
        raise NotADashboardError(
            f"{address} answers, but not as a Ray dashboard (no Ray version at {address}/api/version): pass the "
            f"head node's dashboard address, http://HEAD:{DEFAULT_DASHBOARD_PORT} by default (`ray status` on the "
            f"head prints the cluster; the GCS port 6379 is not the dashboard)"
        )
    return str(version)


def server_auth_mode(address: str) -> str:
    """'token', 'disabled', or 'unknown' (Ray < 2.52 has no such endpoint, nor has a server that is not Ray)."""
    body = _get_json(address, "/api/authentication_mode", {})
    if not isinstance(body, dict):
        return "unknown"
    return str(body.get("authentication_mode", "unknown"))


@contextlib.contextmanager
def _translated(address: str, job_id: str | None = None) -> Iterator[None]:
    """Turn the Jobs SDK's exceptions into one RelayError each, with what to do."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        failed = "Authentication failed" in str(exc)
        message = _wrong_token_message(address) if failed else _missing_token_message(address)
        raise AuthTokenError(message) from exc
    except (ConnectionError, requests.exceptions.RequestException) as exc:
        raise ClusterUnreachableError(_unreachable_message(address)) from exc
    except RuntimeError as exc:
        raise _request_error(address, job_id, str(exc)) from exc


def _request_error(address: str, job_id: str | None, text: str) -> JobsError:
    if "status code 404" in text and job_id is not None:
        return JobNotFoundError(
            f"no job {job_id!r} on the Ray cluster at {address}: list the jobs with `relay jobs --address {address}`"
        )
    if "already exists" in text:
        return JobsError(
            f"the Ray cluster at {address} already has a job with this submission id: "
            f"pick another id, or follow that job with `relay status {job_id or '<id>'}`"
        )
    last_line = text.strip().splitlines()[-1] if text.strip() else text
    return JobsError(f"the Ray Jobs server at {address} refused the request: {last_line}")


def connect(address: str | None) -> JobSubmissionClient:
    """A Jobs client for the cluster, with the token attached; fails fast and clearly.

    The probe first (5 s timeout) because Ray's client has no timeout and a
    firewalled address would otherwise hang; it also tells a missing token
    apart from a wrong one before any request is made.
    """
    url = resolve_address(address)
    mode = server_auth_mode(url)
    if mode == "unknown":  # a Ray dashboard answers this (2.52+), unauthenticated; an older one, or none at all
        check_dashboard(url)
    headers = auth_headers()
    if mode == "token" and not headers:
        raise AuthTokenError(_missing_token_message(url))
    from ray.job_submission import JobSubmissionClient

    with _translated(url):
        return JobSubmissionClient(url, headers=headers)


# --------------------------------------------------------------------------- submit


def relay_env_vars() -> dict[str, str]:
    """RELAY_* and MLFLOW_TRACKING_URI from this shell, so the job sees the same settings."""
    return {key: value for key, value in os.environ.items() if key.startswith("RELAY_") or key == "MLFLOW_TRACKING_URI"}


def build_runtime_env(working_dir: str, env_vars: dict[str, str], pip: list[str] | None) -> dict[str, Any]:
    """The job's runtime_env: the code to upload (minus local clutter), env vars, extra pip."""
    runtime_env: dict[str, Any] = {
        "working_dir": working_dir,
        "excludes": list(WORKING_DIR_EXCLUDES),
        "env_vars": dict(env_vars),
    }
    if pip:
        runtime_env["pip"] = list(pip)
    return runtime_env


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
) -> str:
    """Submit a shell command with ``working_dir`` uploaded; returns the submission id.

    The entrypoint defaults to 0 CPUs and 0 GPUs: the driver only orchestrates and
    then runs on the head node, and every GPU stays free for the stages, which
    request their own resources. ``metadata`` shows in `ray job list` and the dashboard.
    """
    url = resolve_address(address)
    folder = Path(working_dir).expanduser()
    if not folder.is_dir():
        raise JobsError(f"working_dir {working_dir!r} is not a folder: pass the project root to upload")
    runtime_env = build_runtime_env(str(folder.resolve()), env_vars or {}, pip)
    client = connect(url)
    with _translated(url, submission_id):
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=submission_id,
            entrypoint_num_cpus=entrypoint_num_cpus or None,
            entrypoint_num_gpus=entrypoint_num_gpus or None,
            metadata=dict(metadata or {}),
        )
    logger.info("submitted %s to %s: %s", job_id, url, entrypoint)
    return job_id


def pipeline_entrypoint(
    config_path: str,
    overrides: list[str],
    working_dir: str,
    run_id: str | None = None,
    run_flags: list[str] | None = None,
) -> str:
    """``relay run <config> <overrides...> [--run-id ID] [run_flags...]``, quoted; the config path made relative
    to the upload. ``run_flags`` are more `relay run` options (`--rerun-from STAGE`, `--no-cache`).

    The job runs inside the uploaded copy of ``working_dir``, so a config inside it
    must be named relative to it; a path outside it must exist on the cluster.
    """
    config = Path(config_path).expanduser()
    root = Path(working_dir).expanduser().resolve()
    if config.is_absolute():
        try:
            config = config.resolve().relative_to(root)
        except ValueError:
            logger.warning("%s is outside %s: it must exist on the cluster", config_path, root)
    elif not (root / config).is_file():
        logger.warning("%s not found under %s: it must exist on the cluster", config_path, root)
    run_id_flag = ["--run-id", run_id] if run_id else []
    return shlex.join(["relay", "run", config.as_posix(), *overrides, *run_id_flag, *(run_flags or [])])


def resume_entrypoint(run_id: str, store_uri: str) -> str:
    """``relay resume RUN_ID --artifact-uri STORE``: the run record is read from the store on the cluster."""
    return shlex.join(["relay", "resume", run_id, "--artifact-uri", store_uri])


def free_submission_id(address: str | None, run_id: str) -> str:
    """``run_id`` when the cluster has no job by that id, else ``run_id-resume-N`` with the first free N.

    A resumed run keeps its id on a new cluster (the usual case after losing the head);
    on the cluster that already ran it, Ray refuses a second job with the same id.
    """
    taken = {row["id"] for row in list_jobs(address)}
    if run_id not in taken:
        return run_id
    return next(f"{run_id}-resume-{n}" for n in itertools.count(2) if f"{run_id}-resume-{n}" not in taken)


def cluster_gpus(address: str) -> float | None:
    """Total GPUs the cluster reports now, from /api/cluster_status; None if it cannot say.

    ``ray.cluster_resources()`` needs a driver connection, which a Jobs client
    does not have; the dashboard's autoscaler report carries the same totals.
    """
    body = _get_json(address, "/api/cluster_status", auth_headers())
    status = ((body or {}).get("data") or {}).get("clusterStatus") or {}
    report = status.get("loadMetricsReport") or status.get("load_metrics_report")
    if not isinstance(report, dict) or not isinstance(report.get("usage"), dict):
        return None
    used_total = report["usage"].get("GPU")
    return float(used_total[1]) if used_total else 0.0


def check_gpus(address: str, num_gpus: float) -> None:
    """Fail now when the cluster has fewer GPUs than asked, instead of a job stuck in PENDING."""
    total = cluster_gpus(address)
    if total is None:
        logger.warning("could not read the GPU count of %s (/api/cluster_status); not checked", address)
        return
    if total < num_gpus:
        raise InsufficientGpusError(
            f"the Ray cluster at {address} has {total:g} GPU(s), the pipeline asks for "
            f"{num_gpus:g}: start GPU workers (ray up with min_workers >= 1 for the GPU node "
            f"type, or scale the KubeRay GPU worker group), ask for fewer GPUs, or skip this "
            f"check for an autoscaling cluster that starts GPU nodes on demand"
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
    metadata: dict[str, str] | None = None,
    run_flags: list[str] | None = None,
) -> str:
    """Run ``relay run <config> <overrides> --run-id ID [run_flags]`` on the cluster as a Ray job; returns its id.

    The submission id is the run id (one id for Ray, Relay and MLflow), so `relay status ID`
    and `ray job status ID` name the same job. ``num_gpus`` is what the pipeline's stages
    need in total at once; it is checked against the cluster, never reserved for the driver.
    """
    url = resolve_address(address)
    entrypoint = pipeline_entrypoint(config_path, overrides, working_dir, run_id=submission_id, run_flags=run_flags)
    connect(url)  # clear auth/reachability errors before anything else
    if num_gpus > 0 and check_resources:
        check_gpus(url, num_gpus)
    return submit_entrypoint(
        url,
        entrypoint,
        working_dir,
        submission_id=submission_id,
        env_vars=relay_env_vars(),
        pip=extra_pip,
        metadata=metadata,
    )


# --------------------------------------------------------------------------- watch


def _status_of(client: JobSubmissionClient, address: str, job_id: str) -> str:
    with _translated(address, job_id):
        return str(client.get_job_status(job_id).value)


def job_status(address: str | None, job_id: str) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    url = resolve_address(address)
    return _status_of(connect(url), url, job_id)


def job_outcome(address: str | None, job_id: str) -> tuple[str, str]:
    """(status, Ray's message about it): why a job failed or was stopped, in one line."""
    url = resolve_address(address)
    client = connect(url)
    with _translated(url, job_id):
        info = client.get_job_info(job_id)
    return str(info.status.value), str(info.message or "")


def job_logs(address: str | None, job_id: str) -> str:
    """Everything the job's driver printed so far."""
    url = resolve_address(address)
    client = connect(url)
    with _translated(url, job_id):
        return client.get_job_logs(job_id)


def follow_logs(address: str | None, job_id: str) -> Iterator[str]:
    """Yield log chunks as the driver prints them, until the job ends.

    Ray only offers an async tail; this drives it on a private event loop so
    the CLI stays synchronous. The status is read first so that an unknown id
    raises JobNotFoundError instead of a websocket handshake error.
    """
    url = resolve_address(address)
    client = connect(url)
    _status_of(client, url, job_id)
    loop = asyncio.new_event_loop()
    chunks = client.tail_job_logs(job_id)
    try:
        while True:
            chunk = _next_chunk(loop, chunks, url, job_id)
            if chunk is None:
                return
            yield chunk
    finally:
        loop.run_until_complete(chunks.aclose())
        loop.close()


def _next_chunk(loop: asyncio.AbstractEventLoop, chunks: Any, address: str, job_id: str) -> str | None:
    """One chunk of the async tail, or None at its end; a dropped stream says how to pick up."""
    import aiohttp

    with _translated(address, job_id):
        try:
            return loop.run_until_complete(chunks.__anext__())
        except StopAsyncIteration:
            return None
        except (aiohttp.ClientError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "WebSocket" not in str(exc):
                raise
            raise JobsError(
                f"lost the log stream of job {job_id!r} from {address} ({exc.__class__.__name__}): "
                f"check `relay status {job_id}` and run `relay logs {job_id} --follow` again"
            ) from exc


def stop_job(address: str | None, job_id: str) -> bool:
    """Ask the job to stop; False when it had already finished."""
    url = resolve_address(address)
    client = connect(url)
    with _translated(url, job_id):
        return bool(client.stop_job(job_id))


def _iso(millis: int | None) -> str | None:
    if not millis:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC).isoformat(timespec="seconds")


def list_jobs(address: str | None) -> list[dict[str, Any]]:
    """Every job the cluster remembers, oldest first: id, status, entrypoint, times, message."""
    url = resolve_address(address)
    client = connect(url)
    with _translated(url):
        details = client.list_jobs()
    rows = [
        {
            "id": job.submission_id or job.job_id,
            "status": str(job.status.value),
            "entrypoint": job.entrypoint,
            "start_time": _iso(job.start_time),
            "end_time": _iso(job.end_time),
            "message": job.message,
            "metadata": dict(job.metadata or {}),
        }
        for job in details
    ]
    return sorted(rows, key=lambda row: row["start_time"] or "")


def wait_for_job(address: str | None, job_id: str, timeout_s: float, poll_s: float = 1.0) -> str:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED; raise JobTimeoutError after timeout_s."""
    url = resolve_address(address)
    client = connect(url)
    deadline = time.monotonic() + timeout_s
    while True:
        status = _status_of(client, url, job_id)
        if status in TERMINAL_STATUSES:
            return status
        if time.monotonic() >= deadline:
            raise JobTimeoutError(
                f"job {job_id!r} is still {status} after {timeout_s:g} s: follow it with "
                f"`relay logs {job_id} --follow` or stop it with `relay stop {job_id}`"
            )
        time.sleep(poll_s)
