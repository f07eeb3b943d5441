"""Reaching a cluster's Jobs server: the address, the auth token, a probe with a timeout, and one
``RelayError`` per failure that says what to do (see the package docstring on tokens)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.config.values import RAY_ADDRESS_WORDS
from orchestrator.errors import InputError, RelayError, SettingError
from orchestrator.jobs.auth import (
    AUTH_MODE_ENV,
    AUTH_TOKEN_ENV,
    AUTH_TOKEN_PATH_ENV,
    TOKEN_PATH_FIX,
    auth_headers,
    default_token_path,
    token_path_problem,
)

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

logger = logging.getLogger(__name__)
JOBS_SDK_LOGGER = "ray.dashboard.modules.job.sdk"

DEFAULT_DASHBOARD_PORT = 8265
PROBE_TIMEOUT_S = 5.0


class JobsError(RelayError):
    """A Ray Jobs request failed; the message says what to do."""


class AddressError(JobsError, InputError):
    """No cluster address, or one that is not a Jobs server URL: bad input (exit 2), not a cluster failure."""


class ClusterUnreachableError(JobsError, InputError):
    """Nothing answers at the address (refused, no such host, no answer in time): bad input (exit 2).

    Raised by the probe every command makes first, so nothing has been sent or written yet. A
    connection lost after the probe answered is a plain JobsError (the cluster failed, exit 1).
    """


class AuthTokenError(JobsError, InputError):
    """The cluster wants a token and we sent none, or the wrong one: bad input (exit 2), as for `relay run --address`.

    Found by the probe every command makes first (or the client's first request), so nothing was sent yet.
    """


class NotADashboardError(JobsError, SettingError):
    """Something answers at the address, but not a Ray dashboard (a wrong port, another server)."""


class JobIdTakenError(JobsError, InputError):
    """The cluster already has a job with the submission id asked for (Ray never reuses one): bad input (exit 2)."""


class JobNotFoundError(JobsError, InputError):
    """The cluster knows no job with this id: bad input (exit 2), like `relay resume` of an unknown run."""


class UploadTooLargeError(JobsError, InputError):
    """The folder a submission uploads is over Ray's limit: bad input (exit 2), since nothing was submitted."""


class InsufficientResourcesError(JobsError, InputError):
    """The cluster has less of a resource (GPUs, CPUs, a custom one) than a stage needs (it would wait forever),
    or no node large enough for one of its workers: bad input (exit 2), since nothing was submitted."""


class JobStillRunningError(JobsError, InputError):
    """A job of the run is still PENDING or RUNNING: a second driver would write the same ledger (exit 2)."""


class JobTimeoutError(JobsError):
    """A job did not reach a terminal status in time."""


# --------------------------------------------------------------------------- address


HOST_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # a DNS name or an IPv4 address; IPv6 ones hold ':' instead


def resolve_address(address: str | None) -> str:
    """The Jobs server URL from the argument, else $RAY_ADDRESS; ``host:port`` gets ``http://``.

    Checked for form only (http or https, a host, a port from 1 to 65535; a bare word needs its
    port), so a typo is named as bad input instead of surfacing as a cluster that does not answer.
    """
    key = "--address" if address else "RAY_ADDRESS"
    value = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if not value:
        raise AddressError(
            "no Ray cluster address: pass --address http://HOST:8265 (the dashboard of the "
            "head node) or set RAY_ADDRESS=http://HOST:8265"
        )
    if value.startswith("ray://") or value in RAY_ADDRESS_WORDS:
        raise AddressError(
            f"{key} {value!r} is a Ray client/GCS address; Relay submits through the Jobs "
            f"server: pass --address http://HOST:{DEFAULT_DASHBOARD_PORT} (the dashboard port)"
        )
    url = value if "://" in value else f"http://{value}"
    problem = _url_problem(url, needs_port="://" not in value)
    if problem:
        example = (
            f"--address http://HOST:{DEFAULT_DASHBOARD_PORT}" if key == "--address" else "RAY_ADDRESS=http://HOST:8265"
        )
        raise AddressError(
            f"{key} {value[:200]!r} is not a Ray Jobs server address ({problem}); pass the head node's "
            f"dashboard as {example}"
        )
    return url.rstrip("/")


def _url_problem(url: str, needs_port: bool) -> str | None:
    """What is wrong with the form of a Jobs server URL, or None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed or malformed IPv6 literal: `http://[::1`
        return str(exc)
    if parts.scheme.lower() not in ("http", "https"):
        return f"the scheme must be http:// or https://, not {parts.scheme}://"
    host = parts.hostname or ""
    if not host:
        return "no host"
    if ":" not in host and not HOST_CHARS.fullmatch(host):
        return f"{host[:100]!r} is not a host name"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and ":" in parts.netloc.rsplit("]", 1)[-1]):
        return "the port must be a number from 1 to 65535"
    if port is None and needs_port:
        return "no port: write HOST:PORT"
    return None


def _missing_token_message(address: str) -> str:
    kept_back = _token_kept_back()
    if kept_back:
        return (
            f"the Ray cluster at {address} requires a token, and {AUTH_MODE_ENV}=disabled keeps the one in {kept_back} "
            f"from being sent: unset {AUTH_MODE_ENV} (or set {AUTH_MODE_ENV}=token)"
        )
    path_problem = token_path_problem()
    if path_problem:
        return f"the Ray cluster at {address} requires a token and none was found: {path_problem}; {TOKEN_PATH_FIX}"
    return (
        f"the Ray cluster at {address} requires a token and none was found: set "
        f"RAY_AUTH_TOKEN=<token> (on the head node: `ray get-auth-token`), or copy the head's "
        f"~/.ray/auth_token to this machine and set RAY_AUTH_MODE=token "
        f"(or RAY_AUTH_TOKEN_PATH=<file>)"
    )


def _token_kept_back() -> str | None:
    """Where the token is that RAY_AUTH_MODE=disabled keeps from being sent (Ray's order: RAY_AUTH_TOKEN, the file
    RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token); None when the mode is not disabled or there is no token.

    Why: with a token set and the mode disabled, a token cluster's refusal said "none was found: set
    RAY_AUTH_TOKEN", which the user had done; the setting to change is the mode.
    """
    if os.environ.get(AUTH_MODE_ENV, "").strip().lower() != "disabled":
        return None
    if os.environ.get(AUTH_TOKEN_ENV, "").strip():
        return f"${AUTH_TOKEN_ENV}"
    named = os.environ.get(AUTH_TOKEN_PATH_ENV)
    path = Path(named).expanduser() if named else default_token_path()
    try:
        return str(path) if path.read_text().strip() else None
    except (OSError, UnicodeDecodeError):
        return None


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
        f"'ray[default]' on the head; through a tunnel: ray dashboard cluster.yaml); "
        f"or fix --address / RAY_ADDRESS (http://HOST:{DEFAULT_DASHBOARD_PORT})"
    )


def _gcs_message(address: str, dashboard: str | None) -> str:
    where = (
        f"this cluster's dashboard is at {dashboard}"
        if dashboard
        else f"the dashboard is http://HEAD:{DEFAULT_DASHBOARD_PORT} by default (`ray start --head --dashboard-port`)"
    )
    return (
        f"{address} is the Ray cluster's GCS address (what `relay run --address HOST:PORT` joins), not its "
        f"dashboard: the job commands talk to the dashboard's Jobs server; {where}: fix --address / RAY_ADDRESS"
    )


def _no_jobs_server(address: str, exc: Exception) -> JobsError:
    """Why no Jobs server answered at ``address``: the cluster's GCS port given instead (named as such), or nothing.

    Why: the GCS speaks gRPC only, so an HTTP request there fails as if nothing listened, and the
    user was asked whether the cluster was up while it was. The check is ``gcs_probe``, the one
    `relay run --address` makes, asked only where something accepts connections.
    """
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout) or not _accepts_connections(address):
        return ClusterUnreachableError(_unreachable_message(address))
    from orchestrator.jobs.gcs import ANSWERED, gcs_dashboard, gcs_probe

    host_port = urlsplit(address).netloc
    code = gcs_probe(host_port, PROBE_TIMEOUT_S)
    if code in (ANSWERED, "UNAUTHENTICATED"):  # a GCS, whether or not it lets us in
        dashboard = gcs_dashboard(host_port, PROBE_TIMEOUT_S) if code == ANSWERED else None
        return NotADashboardError(_gcs_message(address, dashboard))
    if code == "UNIMPLEMENTED":
        return NotADashboardError(
            f"{address} speaks gRPC, not HTTP: a Ray node's port (a raylet's, Ray Client's?), not the dashboard; pass "
            f"the head node's dashboard, http://HEAD:{DEFAULT_DASHBOARD_PORT} by default: fix --address / RAY_ADDRESS"
        )
    return ClusterUnreachableError(_unreachable_message(address))


def _accepts_connections(address: str) -> bool:
    """Whether something listens at the URL's host and port (a TCP connection succeeds)."""
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _lost_message(address: str, job_id: str | None) -> str:
    follow = f"`relay status {job_id} --address {address}`" if job_id else f"`relay jobs --address {address}`"
    return (
        f"lost the connection to the Ray Jobs server at {address} during the request: "
        f"check the cluster with {follow} and try again"
    )


# --------------------------------------------------------------------------- connection


def dashboard_json(address: str, path: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """GET a dashboard endpoint with a timeout (Ray's client has none); None if not JSON/200."""
    import requests

    try:
        response = requests.get(f"{address}{path}", headers=headers, timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.RequestException as exc:
        raise _no_jobs_server(address, exc) from exc
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
    body = dashboard_json(address, "/api/version", auth_headers())
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
    body = dashboard_json(address, "/api/authentication_mode", {})
    if not isinstance(body, dict):
        return "unknown"
    return str(body.get("authentication_mode", "unknown"))


@contextlib.contextmanager
def translated_errors(
    address: str, job_id: str | None = None, upload: str | None = None, kind: str | None = None
) -> Iterator[None]:
    """Turn the Jobs SDK's exceptions into one RelayError each, with what to do.

    ``upload`` is the folder being sent with a submission, so an upload that is too big can name it; ``kind`` is what
    the submitted job is (a key of TAKEN_BY), so that its id taken meanwhile is explained as what it is.
    """
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        failed = "Authentication failed" in str(exc)
        message = _wrong_token_message(address) if failed else _missing_token_message(address)
        raise AuthTokenError(message) from exc
    except (ConnectionError, requests.exceptions.RequestException) as exc:  # the probe answered moments ago
        raise JobsError(_lost_message(address, job_id)) from exc
    except RuntimeError as exc:
        raise _request_error(address, job_id, str(exc), upload, kind) from exc


def _request_error(
    address: str, job_id: str | None, text: str, upload: str | None = None, kind: str | None = None
) -> JobsError:
    if re.search(r"status code 413\b", text) or "Maximum request body size" in text:  # not a 413 in an id or hash
        return UploadTooLargeError(
            f"the upload of {upload or 'the working folder'} is over Ray's 100 MiB limit: run from the project "
            "folder, or move data/workspaces out of it"
        )
    if "status code 404" in text and job_id is not None:
        return JobNotFoundError(
            f"no job {job_id!r} on the Ray cluster at {address}: list the jobs with `relay jobs --address {address}`"
        )
    if "already exists" in text:
        return JobIdTakenError(_job_id_taken_message(address, job_id or "<id>", kind=kind))
    last_line = text.strip().splitlines()[-1] if text.strip() else text
    return JobsError(f"the Ray Jobs server at {address} refused the request: {last_line}")


# What took a job id the submission had found free, by what the job is: a resume's and a sweep's ids are picked by
# `relay submit` (``submit.free_submission_id``), so only another submit at the same moment takes one.
TAKEN_BY = {
    "resume": "another resume of this run was just submitted",
    "sweep": "another job of this sweep was just submitted",
    None: "another job by that id was just submitted",
}


def _job_id_taken_message(address: str, job_id: str, status: str | None = None, kind: str | None = "run") -> str:
    """Why the cluster refused the job id, and the way on. Only a new run's id is the user's (--run-id, else a new
    one): the others are not theirs to change, and --resume / --resume-sweep refuse --run-id."""
    state = f" ({status})" if status else ""
    follow = f"`relay status {job_id} --address {address}`"
    if kind == "run":
        return (
            f"--run-id: the Ray cluster at {address} already has a job {job_id!r}{state}, and Ray never reuses a job "
            f"id: pick another --run-id (or leave it out for a new one); follow that job with {follow}"
        )
    taken_by = TAKEN_BY.get(kind, TAKEN_BY[None])
    return f"the Ray cluster at {address} already has a job {job_id!r}{state}: {taken_by}; follow it with {follow}"


def check_job_id_free(client: JobSubmissionClient, address: str, job_id: str) -> None:
    """Refuse (JobIdTakenError, exit 2) a submission id the cluster already has, before anything is uploaded.

    Why: Ray checks the id only when the job is submitted, after the project folder was uploaded,
    and its refusal was a cluster failure (exit 1) for what is a wrong --run-id.
    """
    try:
        with translated_errors(address, job_id):
            info = client.get_job_info(job_id)
    except JobNotFoundError:
        return
    raise JobIdTakenError(_job_id_taken_message(address, job_id, str(info.status.value)))


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

    quiet_jobs_sdk()
    with translated_errors(url):
        return JobSubmissionClient(url, headers=headers)


def quiet_jobs_sdk() -> None:
    """Ray's Jobs SDK logger at WARNING: it sets itself to INFO when imported, after the CLI set Ray's levels.

    At INFO, `relay submit --wait` and `relay logs -f` ended with Ray's "WebSocket closed for job
    ... with close code 1000" under the job's log. (The upload lines of `relay submit` come from
    another module of Ray's and stay: a large upload is otherwise a silent wait.)
    """
    logging.getLogger(JOBS_SDK_LOGGER).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- submit
