"""Watching a submitted job: status, logs (whole or followed), stop, list, wait."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from orchestrator.jobs.connection import JobsError, JobTimeoutError, connect, resolve_address, translated_errors
from orchestrator.jobs.ray_dumps import DumpFilter, without_dumps

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
ACTIVE_STATUSES = frozenset({"PENDING", "RUNNING"})
# How often a followed log returns to Python while no line comes, so that a Ctrl-C is seen (_await_waking)
WAKE_EVERY_S = 0.25
# What Ray's JobSupervisor appends to a failed entrypoint's message: the log's last 10 lines (job_supervisor.py)
RAY_LOG_TAIL = re.compile(r",? last available logs \(truncated to [^)]*\):\n.*", re.DOTALL)


def _status_of(client: JobSubmissionClient, address: str, job_id: str) -> str:
    with translated_errors(address, job_id):
        return str(client.get_job_status(job_id).value)


def job_status(address: str | None, job_id: str) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    url = resolve_address(address)
    return _status_of(connect(url), url, job_id)


def job_details(address: str | None, job_id: str) -> dict[str, Any]:
    """The job's status, entrypoint, metadata and environment variables (its runtime_env's ``env_vars``).

    `relay status` reads the run a job ran (``relay.run_id`` in the metadata `relay submit` sets) and the
    store it wrote to (the entrypoint's --artifact-uri, its RELAY_* variables) from them.
    """
    url = resolve_address(address)
    client = connect(url)
    with translated_errors(url, job_id):
        info = client.get_job_info(job_id)
    return {
        "status": str(info.status.value),
        "entrypoint": info.entrypoint or "",
        "metadata": dict(info.metadata or {}),
        "env_vars": _env_vars(info.runtime_env),
    }


def _env_vars(runtime_env: dict[str, Any] | None) -> dict[str, str]:
    """A job's environment variables, from its runtime_env (empty when it set none)."""
    env_vars = (runtime_env or {}).get("env_vars") or {}
    return dict(env_vars) if isinstance(env_vars, dict) else {}


def job_outcome(address: str | None, job_id: str) -> tuple[str, str]:
    """(status, Ray's message about it): why a job failed or was stopped, without the log's tail.

    Ray ends a failed entrypoint's message with the last lines of its log ("Job entrypoint command
    failed with exit code 1, last available logs (truncated to 20,000 chars):" and up to 10 lines).
    `relay submit --wait` has just streamed that log, so it printed a short log twice; the tail is
    cut off here, and `relay logs ID` still has all of it.
    """
    url = resolve_address(address)
    client = connect(url)
    with translated_errors(url, job_id):
        info = client.get_job_info(job_id)
    return str(info.status.value), RAY_LOG_TAIL.sub("", str(info.message or ""), count=1)


def job_logs(address: str | None, job_id: str) -> str:
    """Everything the job's driver printed so far, but Ray's periodic debug dumps (``ray_dumps``)."""
    url = resolve_address(address)
    client = connect(url)
    with translated_errors(url, job_id):
        return without_dumps(client.get_job_logs(job_id))


def follow_logs(address: str | None, job_id: str) -> Iterator[str]:
    """Yield log chunks as the driver prints them, until the job ends; whole lines, Ray's debug dumps left out.

    Ray only offers an async tail; this drives it on a private event loop so
    the CLI stays synchronous. The status is read first so that an unknown id
    raises JobNotFoundError instead of a websocket handshake error.
    """
    url = resolve_address(address)
    client = connect(url)
    _status_of(client, url, job_id)
    loop = asyncio.new_event_loop()
    chunks = client.tail_job_logs(job_id)
    dumps = DumpFilter()
    try:
        while (chunk := _next_chunk(loop, chunks, url, job_id)) is not None:
            if shown := dumps.feed(chunk):
                yield shown
        if rest := dumps.flush():
            yield rest
    finally:
        _close(loop, chunks)


def _close(loop: asyncio.AbstractEventLoop, chunks: Any) -> None:
    """Close the tail and its loop without ever replacing the exception that ended the loop.

    Ctrl-C lands while ``__anext__`` is still awaiting the websocket: ``aclose()`` would then
    raise "asynchronous generator is already running" and hide the KeyboardInterrupt behind a
    40-line traceback. The pending read is cancelled first; what cleanup still raises is only logged.
    """
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    try:
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(chunks.aclose())
    except (RuntimeError, OSError) as exc:  # the stream is being dropped anyway
        logger.debug("closing the log stream: %s", exc)
    finally:
        loop.close()


def _next_chunk(loop: asyncio.AbstractEventLoop, chunks: Any, address: str, job_id: str) -> str | None:
    """One chunk of the async tail, or None at its end; a dropped stream says how to pick up."""
    import aiohttp

    with translated_errors(address, job_id):
        try:
            return _await_waking(loop, chunks.__anext__())
        except StopAsyncIteration:
            return None
        except (aiohttp.ClientError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "WebSocket" not in str(exc):
                raise
            raise JobsError(
                f"lost the log stream of job {job_id!r} from {address} ({exc.__class__.__name__}): "
                f"check `relay status {job_id}` and run `relay logs {job_id} --follow` again"
            ) from exc


def _await_waking(loop: asyncio.AbstractEventLoop, awaitable: Any) -> Any:
    """Run ``awaitable`` on ``loop`` to its result, returning to Python every WAKE_EVERY_S.

    Python runs signal handlers in the main thread only, between bytecodes. The kernel may hand the
    terminal's SIGINT to another thread of the process (aiohttp resolves names on a thread pool);
    the main thread's epoll_wait is then not interrupted, and a tail that sends nothing more would
    wait for ever with the Ctrl-C pending. Waking every quarter second lets the main thread raise it.
    """
    task = asyncio.ensure_future(awaitable, loop=loop)
    while not task.done():
        loop.run_until_complete(asyncio.wait([task], timeout=WAKE_EVERY_S))
    return task.result()


def stop_job(address: str | None, job_id: str) -> bool:
    """Ask the job to stop; False when it had already finished."""
    url = resolve_address(address)
    client = connect(url)
    with translated_errors(url, job_id):
        return bool(client.stop_job(job_id))


def _iso(millis: int | None) -> str | None:
    if not millis:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC).isoformat(timespec="seconds")


def list_jobs(address: str | None) -> list[dict[str, Any]]:
    """Every job the cluster remembers, oldest first: id, type, status, entrypoint, times, message, metadata and
    environment variables.

    ``type`` is Ray's: SUBMISSION for a job sent through the Jobs API (what `relay status/logs/stop`
    act on), DRIVER for a script that called ``ray.init`` on the cluster itself (its id is Ray's
    job id, e.g. ``08000000``, and its entrypoint is empty).
    """
    url = resolve_address(address)
    client = connect(url)
    with translated_errors(url):
        details = client.list_jobs()
    rows = [
        {
            "id": job.submission_id or job.job_id,
            "type": str(job.type.value),
            "status": str(job.status.value),
            "entrypoint": job.entrypoint,
            "start_time": _iso(job.start_time),
            "end_time": _iso(job.end_time),
            "message": job.message,
            "metadata": dict(job.metadata or {}),
            "env_vars": _env_vars(job.runtime_env),
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
