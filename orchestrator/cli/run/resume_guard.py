"""Whether `relay resume RUN` may take a run over, and its claim on the run once it may.

A run whose ledger says RUNNING has a driver somewhere: on this machine its pid tells whether
it lives; on another one it cannot be checked, and resuming it blindly trained its stages a
second time beside the live driver, into the same folders and MLflow run. A run submitted as a
Ray job is checked by its job's status on its cluster; any other remote driver is refused unless
the user says it is gone (``--driver-gone``), and a resume inside a job `relay submit --resume`
sent for the run is taken: that command checked the cluster's jobs of the run before it submitted.
A resume sent to another cluster than the one whose job last ran the run also asks that cluster
(``check_last_cluster``), both before it is sent and inside its job: a job of the run still running
there would be a second driver of the same ledger and MLflow run.

A resume that may go on claims the run at once (``claimed``): its host and pid go into the
ledger before anything slow (Ray's start), and on a local store it holds an exclusive lock on
the run's record until it ends (``locked``), so a second resume meanwhile is refused,
atomically where the store allows it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from orchestrator.cli.common import store_option
from orchestrator.cli.records.run_status import run_status
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.folder_lock import FolderHeld, folder_locked
from orchestrator.engine.ledger import (
    JOB_ADDRESS_ENV,
    RAY_JOB_ENV,
    claim_run,
    read_command_record,
    read_ledger,
    record_path,
    unclaim_run,
)
from orchestrator.errors import ArtifactError, ConfigError, RelayError

log = logging.getLogger("relay")


def check_not_running(store: ArtifactStore, run_id: str, driver_gone: bool = False) -> None:
    """Refuse (exit 2) to resume a run whose driver may still run it: alive here, a job still running on its
    cluster, or a driver on another machine that cannot be checked (``--driver-gone`` says it is gone).

    Inside a job `relay submit --resume` sent for the run, the cluster whose job last ran it is asked first, when
    it is another one (``check_last_cluster``): the submit could not ask it where this machine did not see the store.
    """
    if not driver_gone and submitted_for(run_id):
        check_last_cluster(store, run_id, os.environ.get(JOB_ADDRESS_ENV))
    status = run_status(store, run_id)
    if not status.is_live:
        return
    driver = recorded_driver(store, run_id)
    host, pid = str(driver.get("host") or "?"), driver.get("pid")
    if host == socket.gethostname():
        raise _refusal(_running_here(store, run_id, driver, host, pid))
    if driver_gone:
        log.warning("run %s: its driver (pid %s on %s) is taken to be gone (--driver-gone)", run_id, pid, host)
        return
    if submitted_for(run_id):
        log.info("run %s: resumed as its job (`relay submit --resume` checked the cluster's jobs)", run_id)
        return
    job_address = _job_address(store, run_id, driver)
    if job_address is not None:
        _check_job_ended(store, run_id, job_address)
        return
    raise _refusal(
        f"run {run_id} is {status} with its driver on another machine ({host}, pid {pid}), which cannot be checked "
        f"from here; wait for it (`relay runs` shows its progress) or stop it there. If that driver is gone (its "
        f"machine lost, its process killed), resume with: relay resume {run_id}{store_option(store.uri)} --driver-gone"
    )


def _running_here(store: ArtifactStore, run_id: str, driver: dict[str, Any], host: str, pid: Any) -> str:
    """Why a run whose driver lives on this machine is not resumed, and how to stop it: a Ray job's through
    `relay stop` (a cluster of one machine), any other driver by its pid.

    Why: the driver of a submitted run on a one-machine cluster lives here too, and the refusal said
    to kill its pid, behind the back of Ray, which runs the job; its ways on are the job's, as
    `relay submit --resume` says them.
    """
    if not driver.get("job_id"):
        return (
            f"run {run_id} is still running (driver pid {pid} on {host}); wait for it (`relay runs` shows its "
            f"progress) or stop it (Ctrl-C there, or `kill {pid}`), then resume"
        )
    address = _job_address(store, run_id, driver)
    flag = f" --address {address}" if address else ""
    return (
        f"run {run_id} is still running as Ray job {driver['job_id']} (driver pid {pid} on {host}); wait for it "
        f"(`relay logs -f {run_id}{flag}`) or stop it first (`relay stop {run_id}{flag}`), then resume it on its "
        f"cluster: relay submit --resume {run_id} --address {address or 'http://HEAD:8265'}{store_option(store.uri)}"
    )


def _job_address(store: ArtifactStore, run_id: str, driver: dict[str, Any]) -> str | None:
    """The cluster whose job the driver is, when it is a job's (the address it recorded, else the one the run was
    first submitted to); None for a driver that is no job's, e.g. a laptop's resume of a submitted run."""
    if not driver.get("job_id"):
        return None
    address = driver.get("job_address") or recorded_job(store, run_id).get("job_address")
    return address if isinstance(address, str) and address else None


def _check_job_ended(store: ArtifactStore, run_id: str, address: str) -> None:
    """Refuse while a job of the run is PENDING or RUNNING on the cluster at ``address``, or when it does not answer."""
    from orchestrator import jobs

    try:
        rows = jobs.list_jobs(address)
    except RelayError as exc:
        raise _refusal(
            f"run {run_id} is RUNNING as a job of the Ray cluster at {address}, which does not answer ({exc}); "
            f"if its head is lost, resume it on a new cluster: relay submit --resume {run_id} --address "
            f"http://NEW-HEAD:8265{store_option(store.uri)}; if you know its driver is gone, resume here with: relay resume "
            f"{run_id}{store_option(store.uri)} --driver-gone"
        ) from exc
    if (row := jobs.active_job(rows, run_id)) is not None:
        job = row["id"]
        raise _refusal(
            f"run {run_id} is still running as job {job} ({row['status']}) on the Ray cluster at {address}; "
            f"follow it (relay logs -f {job} --address {address}) or stop it (relay stop {job} --address "
            f"{address}), then resume"
        )
    log.info(
        "run %s: its job on %s has ended; its ledger's RUNNING is left from a driver that is gone", run_id, address
    )


def check_last_cluster(store: ArtifactStore, run_id: str, target: str | None) -> None:
    """Refuse (exit 2) a resume on the cluster at ``target`` while a job of the run is PENDING or RUNNING on the
    cluster whose job last ran it (the address its run record keeps), when that is another one; go on, and say so,
    when that cluster's jobs of the run have ended or it does not answer (a lost head, the reason to move).

    Why: `relay submit --resume` listed only the target cluster's jobs, and the job's resume took the run over as
    soon as it saw it was the run's job; with the old head alive, a resume sent to another cluster made two drivers
    of one ledger and MLflow run. The recorded cluster under another name (localhost for 127.0.0.1) is told apart by
    its Ray session (``same_cluster``): inside the job, its own job would read as the one still running. A cluster
    that answers but cannot be asked (another token) is refused, with the way on once its job is known to be gone
    (``--driver-gone``).
    """
    driver = recorded_driver(store, run_id)
    address = _job_address(store, run_id, driver)
    if address is None or address == target:
        return
    from orchestrator import jobs

    last = f"job {driver.get('job_id')} of the Ray cluster at {address}"
    here = target or "this cluster"
    again = f"relay submit --resume {run_id} --address {target or 'http://HEAD:8265'}{store_option(store.uri)}"
    try:
        rows = jobs.list_jobs(address)
    except (jobs.ClusterUnreachableError, jobs.NotADashboardError) as exc:  # nothing, or no Ray, answers there
        log.debug("the Ray cluster at %s: %s", address, exc)
        log.warning("run %s last ran as %s, which does not answer: taken as lost; resuming on %s", run_id, last, here)
        return
    except RelayError as exc:
        raise _refusal(
            f"run {run_id} last ran as {last}, which answers but cannot be asked whether a job of the run still "
            f"runs there ({exc}); check it there (`relay status {run_id} --address {address}`, with that cluster's "
            f"token) and stop it if it runs, then resume with: {again} --driver-gone"
        ) from exc
    if target is not None and same_cluster(address, target):
        return
    if (row := jobs.active_job(rows, run_id)) is not None:
        job = row["id"]
        raise _refusal(
            f"run {run_id} is still running as job {job} ({row['status']}) on the Ray cluster at {address}, "
            f"where it last ran: a resume on {here} would be a second driver of the run. Follow it there "
            f"(`relay logs -f {job} --address {address}`) or stop it (`relay stop {job} --address {address}`), "
            f"then resume with: {again}"
        )
    log.info(
        "run %s: its jobs on the Ray cluster at %s, where it last ran, have ended; resuming on %s",
        run_id,
        address,
        here,
    )


def same_cluster(address: str, other: str) -> bool:
    """Whether two dashboard addresses that differ are one Ray cluster: the same session (each `ray start --head`
    has its own). False where either does not say."""
    from orchestrator.jobs import auth_headers
    from orchestrator.jobs.connection import dashboard_json

    def session(url: str) -> str | None:
        try:
            body = dashboard_json(url, "/api/version", auth_headers())
        except RelayError:
            return None
        name = body.get("session_name") if isinstance(body, dict) else None
        return name if isinstance(name, str) and name else None

    mine = session(address)
    return mine is not None and mine == session(other)


def _refusal(problem: str) -> ConfigError:
    return ConfigError([problem], "the command line")


def recorded_driver(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """The run's last driver: its ledger's, else (no ledger yet) its command record's; {} when neither is readable."""
    try:
        ledger = read_ledger(store, run_id)
    except ArtifactError:
        ledger = None
    driver = ledger.get("driver") if isinstance(ledger, dict) else None
    if isinstance(driver, dict):
        return driver
    command = _command(store, run_id)
    return command["driver"] if isinstance(command.get("driver"), dict) else {}


def recorded_job(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """The Ray job the run was started as (`relay submit`): ``job_id`` and, where submit passed it, ``job_address``
    (its dashboard URL), from the command record's driver; {} for a run started by `relay run` itself."""
    driver = _command(store, run_id).get("driver")
    if not isinstance(driver, dict) or not driver.get("job_id"):
        return {}
    return {key: driver[key] for key in ("job_id", "job_address") if isinstance(driver.get(key), str)}


def _command(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    try:
        return read_command_record(store, run_id)
    except ArtifactError:
        return {}


def submitted_for(run_id: str) -> bool:
    """Whether this process is the entrypoint of a Ray job submitted for ``run_id`` (`relay submit --resume`
    names its job ``run_id`` or ``run_id-resume-N`` after checking that no job of the run is still running)."""
    try:
        metadata = json.loads(os.environ.get(RAY_JOB_ENV) or "{}").get("metadata") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(metadata, dict) and metadata.get("relay.run_id") == run_id


def cluster_job_hint(store: ArtifactStore, run_id: str) -> str:
    """`` (a cluster job: relay submit --resume RUN --address URL)`` for a run submitted as a job, else ""."""
    job = recorded_job(store, run_id)
    if not job:
        return ""
    address = job.get("job_address") or "http://HEAD:8265"
    return f" (a cluster job: relay submit --resume {run_id} --address {address}{store_option(store.uri)})"


@contextlib.contextmanager
def locked(store: ArtifactStore, run_id: str) -> Iterator[None]:
    """An exclusive lock on the run's record folder for the block: the resume, from its claim to its end.

    Why a lock besides the ledger's claim: two resumes that read the ledger at the same moment
    both saw the dead driver; the kernel gives the lock to one, and frees it when that one dies.
    The folder itself is locked, so that nothing is written for it. It is let go when the block
    ends, not when the process does: a process that lives on (a notebook's ``relay.resume``,
    finished or interrupted) kept it, and every later resume of the run was refused as "being
    resumed by another process". No lock on a store that is not local (or a folder that cannot be
    opened): the ledger's claim still stands.
    """
    path = store.local_path(record_path(run_id, ""))
    with contextlib.ExitStack() as held:
        if path is not None:
            try:
                held.enter_context(folder_locked(path))
            except FolderHeld:
                raise _refusal(
                    f"run {run_id} is being resumed by another process on this machine (it holds {path} locked); "
                    "wait for it (`relay runs` shows its progress) or stop it, then resume"
                ) from None
            except OSError:  # a folder that cannot be opened: the claim still stands
                pass
        yield


@contextlib.contextmanager
def claimed(store: ArtifactStore, run_id: str) -> Iterator[None]:
    """Claim the run for this resume in its ledger (``claim_run``) for the block; when the block fails (bad input
    found after the claim), the ledger is put back as it was."""
    earlier = claim_run(store, run_id)
    try:
        yield
    except BaseException:
        with contextlib.suppress(ArtifactError):
            unclaim_run(store, run_id, earlier)
        raise
