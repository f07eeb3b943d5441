"""Reaching a cluster's Jobs server: the address, the auth token, a probe with a timeout, and one
``RelayError`` per failure that says what to do (see the package docstring on tokens)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.config import RAY_ADDRESS_WORDS
from orchestrator.errors import InputError, RelayError, SettingError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

logger = logging.getLogger(__name__)
JOBS_SDK_LOGGER = "ray.dashboard.modules.job.sdk"

DEFAULT_DASHBOARD_PORT = 8265
PROBE_TIMEOUT_S = 5.0
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


class JobsError(RelayError):
    """A Ray Jobs request failed; the message says what to do."""


class AddressError(JobsError, InputError):
    """No cluster address, or one that is not a Jobs server URL: bad input (exit 2), not a cluster failure."""


class ClusterUnreachableError(JobsError, InputError):
    """Nothing answers at the address (refused, no such host, no answer in time): bad input (exit 2).

    Raised by the probe every command makes first, so nothing has been sent or written yet. A
    connection lost after the probe answered is a plain JobsError (the cluster failed, exit 1).
    """


class AuthTokenError(JobsError):
    """The cluster wants a token and we sent none, or the wrong one."""


class NotADashboardError(JobsError, SettingError):
    """Something answers at the address, but not a Ray dashboard (a wrong port, another server)."""


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
        f"'ray[default]' on the head; through a tunnel: ray dashboard cluster.yaml); "
        f"or fix --address / RAY_ADDRESS (http://HOST:{DEFAULT_DASHBOARD_PORT})"
    )


def _lost_message(address: str, job_id: str | None) -> str:
    follow = f"`relay status {job_id} --address {address}`" if job_id else f"`relay jobs --address {address}`"
    return (
        f"lost the connection to the Ray Jobs server at {address} during the request: "
        f"check the cluster with {follow} and try again"
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
def _translated(address: str, job_id: str | None = None, upload: str | None = None) -> Iterator[None]:
    """Turn the Jobs SDK's exceptions into one RelayError each, with what to do.

    ``upload`` is the folder being sent with a submission, so an upload that is too big can name it.
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
        raise _request_error(address, job_id, str(exc), upload) from exc


def _request_error(address: str, job_id: str | None, text: str, upload: str | None = None) -> JobsError:
    if "413" in text or "Maximum request body size" in text:
        return UploadTooLargeError(
            f"the upload of {upload or 'the working folder'} is over Ray's 100 MiB limit: run from the project "
            "folder, or move data/workspaces out of it"
        )
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

    quiet_jobs_sdk()
    with _translated(url):
        return JobSubmissionClient(url, headers=headers)


def quiet_jobs_sdk() -> None:
    """Ray's Jobs SDK logger at WARNING: it sets itself to INFO when imported, after the CLI set Ray's levels.

    At INFO, `relay submit --wait` and `relay logs -f` ended with Ray's "WebSocket closed for job
    ... with close code 1000" under the job's log. (The upload lines of `relay submit` come from
    another module of Ray's and stay: a large upload is otherwise a silent wait.)
    """
    logging.getLogger(JOBS_SDK_LOGGER).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- submit
