"""Starting the local Ray instance a run uses, or joining a cluster, and saying why a local start failed.

``init_kwargs`` chooses what ``ray.init`` is asked (join an address, else start a local instance on a
free dashboard port); ``init_ray`` starts it under Relay's signal handling (``signals``), its
start-up lines cut (``ray_start_log``) and its dashboard port held (``port_lock``); when it fails,
``init_failure`` reads the new session's logs for a cause a user can act on (memory, disk, port).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.engine import port_lock
from orchestrator.engine.ray_start_log import start_failures_unless_interrupted, start_lines
from orchestrator.engine.signals import (
    interrupts_kept,
    join_abandoned_on_signal,
    terminate_as_interrupt,
    terminations_kept,
)

logger = logging.getLogger(__name__)

DASHBOARD_PORT = 8265
# How many ports from 8265 up a local dashboard may take before the OS chooses one.
PORTS_TRIED = 100
API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"  # where Ray's state API looks first for the dashboard to ask


def init_kwargs(
    address: str | None, num_cpus: int | None, include_dashboard: bool, object_store_memory: int | None = None
) -> dict[str, Any]:
    """ray.init arguments: join ``address`` or RAY_ADDRESS (a Ray job sets it), else start a local instance.

    ``address="local"`` because a bare ray.init() joins whatever cluster the machine's
    ``<ray temp dir>/ray_current_cluster`` file names: someone's `ray start`, or a head that
    died without `ray stop` (the file stays behind). Joining then failed on ``num_cpus``, or
    hung on a dead address. Resources (``num_cpus``, ``object_store_memory``) are only given when
    starting the local instance (ray.init refuses them when it connects to a cluster); ``address``
    "local" starts one too.
    """
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if address and address != "local":
        kwargs["address"] = address
        if object_store_memory is not None:
            logger.warning("run.object_store_memory applies only to a local Ray instance; %s keeps its own", address)
    elif not address and os.environ.get("RAY_ADDRESS"):
        said = logger.info if object_store_memory is None else logger.warning
        said(
            "connecting to the cluster in RAY_ADDRESS; run.num_cpus and run.object_store_memory apply only to a "
            "local instance"
        )
    else:
        kwargs.update(address="local", num_cpus=num_cpus, include_dashboard=include_dashboard)
        if object_store_memory is not None:
            kwargs["object_store_memory"] = object_store_memory
        if include_dashboard:
            kwargs["dashboard_port"] = dashboard_port()
    return kwargs


def init_ray(ray: Any, kwargs: dict[str, Any]) -> None:
    """``ray.init(**kwargs)``; a Ctrl-C while it starts is not lost (``interrupts_kept``).

    ``dashboard_port`` can only see that a port is free, not keep it: two `relay run` started in the
    same second both saw 8265 free, and the second one's dashboard failed to bind it a minute later
    (Ray 2.60 gives up instead of moving on; a port taken before ``ray.init`` fails at once). So a
    local start checks the port again, and starts Ray, under a machine-wide lock (``port_lock``),
    which a second start waits for (a Ctrl-C still stops that wait at once). A start that lost its
    port all the same (the lock could not be had, or another program took the port) is retried once
    on the next free one. Ray's start-up lines are cut to what a user can act on (``start_lines``).
    """
    with contextlib.ExitStack() as held:
        if "dashboard_port" in kwargs:  # checked again, and bound, under the lock
            held.enter_context(port_lock.dashboard_port_lock())
            kwargs = {**kwargs, "dashboard_port": dashboard_port()}
        held.enter_context(start_lines(local=kwargs.get("address") == "local"))
        held.enter_context(terminations_kept(ray))
        interrupted = held.enter_context(interrupts_kept(ray.shutdown))
        held.enter_context(join_abandoned_on_signal(kwargs.get("address")))  # joining only
        held.enter_context(start_failures_unless_interrupted(interrupted))
        _start_ray(ray, kwargs, interrupted)
    terminate_as_interrupt()


def _start_ray(ray: Any, kwargs: dict[str, Any], interrupted: Sequence[int] = ()) -> None:
    """``ray.init``, retried once on another port when the dashboard's was taken meanwhile.

    ``interrupted``: the Ctrl-Cs noted while Ray started. A Ctrl-C in a terminal reaches the whole
    process group, Ray's own processes too, so a dashboard that died then was stopped, not
    outbid for its port: the start ends as interrupted, without a retry or a word about ports.
    """
    try:
        with state_api_named(kwargs):
            ray.init(**kwargs)
    except Exception as exc:  # Ray raises a bare Exception for a dashboard that did not start
        if interrupted:
            ray.shutdown()
            raise KeyboardInterrupt from exc
        if "dashboard_port" not in kwargs or "dashboard" not in str(exc).lower():
            raise
        lost = kwargs["dashboard_port"]
        retry_port = dashboard_port(first=lost + 1)
        if port_taken(exc):
            logger.warning("Ray's dashboard lost port %s to another process; starting on %s", lost, retry_port)
        else:
            logger.warning("Ray's dashboard did not start on port %s; starting Ray again on %s", lost, retry_port)
        ray.shutdown()
        retry = {**kwargs, "dashboard_port": retry_port}
        with state_api_named(retry):
            ray.init(**retry)


@contextlib.contextmanager
def state_api_named(kwargs: dict[str, Any]) -> Iterator[None]:
    """While a local instance starts, ``RAY_API_SERVER_ADDRESS`` names its dashboard, so that its processes inherit it.

    Why: Ray's state API, called without an address in a worker, looks for the machine's Ray
    instances, and with a second one on the host (another `relay run`, someone's `ray start`) it
    raised "Found multiple active Ray instances". Ray Train's PlacementGroupCleaner asks it every
    second whether the trainer lives, so every data-parallel stage printed that traceback and ran
    without the cleaner that frees its workers' reservation should the trainer die. The raylet copies
    this process's environment as it starts, and its workers copy the raylet's; the variable is
    removed from this process afterwards (the driver names its GCS whenever it asks the state API).
    Joining a cluster, or a start without a dashboard, leaves the environment alone.
    """
    port = kwargs.get("dashboard_port")
    if kwargs.get("address") != "local" or not kwargs.get("include_dashboard") or port is None:
        yield
        return
    from ray._common.network_utils import build_address, get_localhost_ip

    before = os.environ.get(API_SERVER_VARIABLE)
    os.environ[API_SERVER_VARIABLE] = f"http://{build_address(get_localhost_ip(), port)}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(API_SERVER_VARIABLE, None)
        else:
            os.environ[API_SERVER_VARIABLE] = before


def port_taken(exc: Exception) -> bool:
    """Whether ``ray.init`` failed because its dashboard's port was in use (not slow, not broken)."""
    text = str(exc).lower()
    return "already occupied" in text or "address already in use" in text


def dashboard_port(first: int = DASHBOARD_PORT) -> int:
    """The first free port from ``first`` up (Ray's usual 8265 by default); the OS's choice if none is.

    A second local Ray instance on the machine (another `relay run`, another user's tests) holds
    8265, and Ray 2.60 then fails to start the dashboard instead of moving on. The ports are tried in
    turn, below the range the OS hands out for port 0: a port the OS chose could be handed out again
    to the next process asking for one, Ray's own processes in this very start among them, before
    the dashboard binds it.
    """
    for port in (*range(first, min(first + PORTS_TRIED, 65536)), 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    return DASHBOARD_PORT


def init_failure(address: str | None, exc: Exception, began: float | None = None) -> str:
    """What to check when ray.init fails: a local start (``local_start_failure``) or joining a cluster (address, token).

    A cluster with token auth refuses a driver without its token in the same words as one that is
    down ("Failed to connect to GCS"), so the token is named whenever a cluster was joined.
    """
    if address is None:
        return local_start_failure(exc, None if began is None else session_logs(began))
    return (
        f"could not join the Ray cluster at {address}: {exc}; check the address (--address, run.ray_address or "
        "RAY_ADDRESS) and, on a cluster with token auth, that RAY_AUTH_TOKEN or ~/.ray/auth_token holds the "
        "token of its head node"
    )


def local_start_failure(exc: Exception, logs: Path | None) -> str:
    """Why a local Ray instance did not start, and what to do: the cause its logs name (``start_failure_cause``),
    else Ray's own words; either way where Ray's logs are.

    Why: Ray says only "The current node timed out during startup" when its raylet died at once (a
    memory cap left it no room for its object store: ``mmap failed``), and Relay's advice to try
    again did not help; the cause was in the session's raylet.err, which nothing named.
    """
    if logs is None:
        return f"could not start a local Ray instance: {exc}; on a busy machine try again, or pass run.num_cpus lower"
    cause = start_failure_cause(logs)
    if cause is not None:
        return f"could not start a local Ray instance: {cause} (Ray's logs: {logs})"
    return (
        f"could not start a local Ray instance: {exc}; on a busy machine try again, or pass run.num_cpus lower "
        f"(Ray's logs, raylet.err and gcs_server.err first, may say why: {logs})"
    )


# What a line of Ray's start-up logs means, and its fix, first match wins (checked in START_LOGS' order).
START_FAILURE_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("mmap failed", "cannot allocate memory", "plasmaallocator initialization failed", "std::bad_alloc"),
        "its object store could not get its memory ({quote}): a memory cap (ulimit -v, prlimit --as, a "
        "container's limit) or a small /dev/shm leaves less than Ray's default store (30% of the machine's "
        "memory); set run.object_store_memory lower, e.g. run.object_store_memory=1GB",
    ),
    (
        ("no space left on device",),
        "the disk of Ray's temp folder is full ({quote}); free space there, or point RAY_TMPDIR at a disk with room",
    ),
    (
        ("address already in use", "failed to bind"),
        "a port Ray needs is taken by another program ({quote}); stop it (another Ray instance: `ray stop`) "
        "or try again",
    ),
)
START_LOGS = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out", "dashboard.err", "dashboard.log")
LOG_TAIL_BYTES = 256 * 1024  # how much of each log is read: the cause is near its end
RAY_LINE_PREFIX = re.compile(r"^\[[^\]]*\]\s*(\([a-z_]+\)\s*)?")  # "[2026-... E 20087 20096] (raylet) "


def start_failure_cause(logs: Path) -> str | None:
    """The cause of a failed start that Ray's logs in ``logs`` name (memory, disk, port), with its fix; else None."""
    for name in START_LOGS:
        for line in _tail_lines(logs / name):
            lowered = line.lower()
            for needles, advice in START_FAILURE_CAUSES:
                if any(needle in lowered for needle in needles):
                    quote = f"{name}: {RAY_LINE_PREFIX.sub('', line.strip())[:160]}"
                    return advice.format(quote=quote)
    return None


def _tail_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace").splitlines()
    except OSError:  # a log this start did not write
        return []


def session_logs(began: float) -> Path | None:
    """The logs folder of the Ray session this process created since ``began`` (``time.time()``), or None.

    Ray names a new session's folder ``session_<date>_<pid of the process that started it>`` in its temp
    folder (``RAY_TMPDIR``, else the system's temp folder + ``/ray``); the newest one of this process wins
    (a dashboard port retry starts a second).
    """
    try:
        from ray._common.utils import get_default_ray_temp_dir

        temp = Path(get_default_ray_temp_dir())
        sessions = [
            path
            for path in temp.glob(f"session_*_{os.getpid()}")
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime >= began - 1.0
        ]
    except (ImportError, OSError):  # another Ray, or a temp folder that cannot be read
        return None
    return max(sessions, key=lambda path: path.name) / "logs" if sessions else None
