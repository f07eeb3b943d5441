"""A run's status as its ledger says it, and as `relay runs` shows it: INTERRUPTED for a driver that died.

Apart from the listing because every command that acts on one run asks it first (`relay resume`'s
guard, `relay delete` and `relay gc`, `relay status`, `relay generations`, the Python API), and none
of them needs the table. A ledger is a file anyone can edit or truncate, so it is read through a
typed view whose problem is said, never raised; a run whose driver died before its first ledger
write is known by the driver its command record names.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import (
    COMMAND_FILE,
    LEDGER_FILE,
    RunStatus,
    StageState,
    read_command_record,
    read_ledger,
    record_path,
)
from orchestrator.errors import ArtifactError

RUN_ID_TIME = re.compile(r"-(\d{8}-\d{6})-[0-9a-f]{4}$")  # the time in a run id `relay run` made (new_run_id)


class _Driver(BaseModel):
    host: str = ""
    pid: int = 0


class LedgerStage(BaseModel):
    generation: int | None = None
    state: str = ""
    metrics: dict[str, float] = {}
    error: Any = None  # why the stage failed, as the runner wrote it (any type: shown, never parsed)


class LedgerView(BaseModel):
    """What `relay runs` reads of a ledger (engine/ledger.py writes it), checked for type.

    A ledger is a file anyone can edit or truncate; a value of the wrong type (a pid "abc", a
    metric "n/a") makes the record unreadable, not the command.
    """

    pipeline: str = "?"
    status: RunStatus | None = None
    generations: dict[int, int] = {}
    started: str = ""
    stop_after: str | None = None
    driver: _Driver | None = None
    stages: dict[str, LedgerStage] = {}


@dataclass(frozen=True)
class LedgerRead:
    """A run's ledger as read: the view (None when there is none yet) or why it cannot be read."""

    view: LedgerView | None = None
    problem: str | None = None


def read_view(store: ArtifactStore, run_id: str) -> LedgerRead:
    """The run's ledger, or why it cannot be read (one bad record spoils no list)."""
    relative = record_path(run_id, LEDGER_FILE)
    try:
        data = read_ledger(store, run_id)
        if data is not None and not isinstance(data, dict):
            return LedgerRead(problem=f"{relative}: expected a JSON object, got a {type(data).__name__}")
        return LedgerRead(_starting(store, run_id) if data is None else LedgerView.model_validate(data))
    except ArtifactError as exc:
        return LedgerRead(problem=str(exc))
    except ValueError as exc:  # pydantic's ValidationError and UnicodeDecodeError are ValueErrors
        return LedgerRead(problem=f"{relative}: {_first_error(exc)}")


def _starting(store: ArtifactStore, run_id: str) -> LedgerView | None:
    """A run without a ledger yet (its driver starts Ray before the first write): the driver its command
    record names, so that one that died starting reads INTERRUPTED, not NOT STARTED for ever, and when
    that record was written as its start (``created``)."""
    try:
        command = read_command_record(store, run_id)
        driver = _Driver.model_validate(command["driver"]) if "driver" in command else None
    except (ArtifactError, ValueError):
        return None
    return None if driver is None else LedgerView(driver=driver, started=created(store, run_id))


def created(store: ArtifactStore, run_id: str) -> str:
    """When the run's command record was written (the run's start, ISO UTC as a ledger's), "" when unknown.

    Why: a run interrupted before its stages started has no ledger, so no start time, and `relay runs`
    listed it last (start "-") however new it was. The record's file time where the store is on this
    disk, else the time in a generated run id (``NAME-YYYYMMDD-HHMMSS-XXXX``, local time).
    """
    local = store.local_path(record_path(run_id, COMMAND_FILE))
    try:
        if local is not None:
            return datetime.fromtimestamp(local.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        pass
    stamp = RUN_ID_TIME.search(run_id)
    if stamp is None:
        return ""
    try:
        when = datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S").astimezone()  # the id's time is the machine's
    except ValueError:
        return ""
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _first_error(exc: ValueError) -> str:
    """The first thing wrong with a ledger, as `key.path: message` (pydantic) or the decoding error."""
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']} (got {error['input']!r:.40})"
    return str(exc)


def run_status(store: ArtifactStore, run_id: str) -> RunStatus:
    """The run's status as `relay runs` shows it (INTERRUPTED for a dead driver, UNREADABLE, NOT STARTED)."""
    read = read_view(store, run_id)
    return RunStatus.UNREADABLE if read.problem is not None else ledger_status(read.view or LedgerView())


def ledger_status(ledger: LedgerView) -> RunStatus:
    """The ledger's status; RUNNING with a dead driver on this host is INTERRUPTED; no ledger yet: STARTING
    while its driver (on this host) lives, INTERRUPTED when it died, else NOT STARTED."""
    driver = ledger.driver or _Driver()
    if ledger.status is None and driver.host == socket.gethostname():
        return RunStatus.STARTING if alive(driver.pid) else RunStatus.INTERRUPTED
    if ledger.status is None:
        return RunStatus.NOT_STARTED
    if ledger.status is RunStatus.RUNNING and driver.host == socket.gethostname() and not alive(driver.pid):
        return RunStatus.INTERRUPTED
    return ledger.status


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host lives (someone else's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:  # a pid no process can have
        return False
    return True


def failed_stage(store: ArtifactStore, run_id: str) -> tuple[str, str] | None:
    """The first stage the run's ledger records as failed, and its error's first line; None when none is."""
    view = read_view(store, run_id).view
    for name, entry in (view.stages if view else {}).items():
        if entry.state == StageState.FAILED:
            return name, str(entry.error or "no error recorded").strip().splitlines()[0]
    return None
