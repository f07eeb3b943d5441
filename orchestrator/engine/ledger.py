"""The run's record: ``runs/<run id>/`` in the artifact store, beside the stage outputs.

Three files: ``config.yaml`` (the resolved config) and ``command.json`` (the command that made
it), written once when the run starts, and ``ledger.json`` (the state of every stage), rewritten
atomically after every change; a fourth, ``tracking.json``, when the tracking store stopped answering
during an attempt (the MLflow record is incomplete) and after the attempt that filled it in; and
``errors/<stage>.txt``, the traceback of each stage that failed (its ledger entry's ``traceback``), kept while the
record says the stage failed: an attempt that finishes the stage removes it (``drop_traceback``; the failed attempt's
copy stays on its MLflow stage run). A run killed at any moment, its head node included, leaves a
readable record of how far it got, on storage that outlives the machine: `relay resume` (from any
machine that sees the store), `relay runs` and a person debugging a failure read it there. The
ledger names the driver (host and pid), so a run whose driver died is told apart from one still
running.

The words a run's record uses are here too, one vocabulary for the runner that writes them and for
`relay runs`, `relay resume` and the rest of the CLI that read them: ``RunStatus`` and ``StageState``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import ArtifactError
from orchestrator.names import sanitize

RUNS = "runs"
CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.json"
LEDGER_FILE = "ledger.json"
TRACKING_FILE = "tracking.json"
ERRORS = "errors"  # runs/<run id>/errors/<stage>.txt: a failed stage's traceback
TORN_READ_ATTEMPTS = 5
TORN_READ_PAUSE_S = 0.2
JOB_ADDRESS_ENV = "RELAY_JOB_ADDRESS"  # the dashboard URL `relay submit` sent the job to, set in the job's env
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for the entrypoint it starts

logger = logging.getLogger(__name__)


class RunStatus(StrEnum):
    """Every status a run has, as its ledger records it and `relay runs` shows it.

    A str enum, so a ledger holds the plain word and one written by any earlier version reads back
    as a member; the CLI's filters and messages compare and print it as that word.

    The runner writes RUNNING, FINISHED, STOPPED (it ended at ``stop_after`` on purpose), FAILED and
    INTERRUPTED (Ctrl-C or SIGTERM, `relay stop` of a job, stopped the driver: nothing failed, `relay
    resume` goes on). `relay runs` says the rest of a run it reads: STARTING (no ledger yet, its driver on
    this host lives), INTERRUPTED (RUNNING, or no ledger yet, with its driver on this host dead), NOT
    STARTED (no ledger and no driver to check) and UNREADABLE (the ledger cannot be read).
    """

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    INTERRUPTED = "INTERRUPTED"
    NOT_STARTED = "NOT STARTED"
    UNREADABLE = "UNREADABLE"

    @property
    def is_live(self) -> bool:
        """Whether a driver may still be writing the run (RUNNING, STARTING).

        Why: such a run is not to be resumed, nor its outputs cleaned up, under that driver; every
        other status is one no driver writes any more (or none that can be checked from here).
        """
        return self in (RunStatus.RUNNING, RunStatus.STARTING)


class StageState(StrEnum):
    """Where one stage stands in a run, as its ledger entry's ``state`` records it."""

    PENDING = "pending"
    RUNNING = "running"
    CACHED = "cached"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


DONE_STATES = (StageState.SUCCEEDED, StageState.CACHED)  # whose output the run has (ran it, or found its own cached)


def record_path(run_id: str, name: str) -> str:
    """A run record file's path relative to the store root: ``runs/<run id>/<name>``."""
    return f"{RUNS}/{run_id}/{name}"


def traceback_path(run_id: str, stage: str) -> str:
    """Where the run record keeps a failed stage's traceback: ``runs/<run id>/errors/<stage>.txt`` (``g00_train.txt``)."""
    return record_path(run_id, f"{ERRORS}/{sanitize(stage)}.txt")


def write_traceback(store: ArtifactStore, run_id: str, stage: str, attempts: int, traceback_text: str) -> str:
    """Store a failed stage's traceback in the run record, under a line naming the stage; returns its path there.

    Why in the record: the ledger's ``error`` holds the exception's last line only, which did not say
    where a plug-in's stage body raised; the record outlives the console and is on every machine that
    sees the store (`relay runs`, a person debugging the run later).
    """
    relative = traceback_path(run_id, stage)
    head = f"run {run_id}: stage {stage!r} failed after {attempts} attempt(s) at {_now()}\n\n"
    store.write_record(relative, (head + traceback_text.rstrip("\n") + "\n").encode())
    return relative


def drop_traceback(store: ArtifactStore, run_id: str, stage: str) -> None:
    """Remove a stage's kept traceback (and, on a local store, ``errors/`` once empty); none there is no error.

    Why: after `relay resume` finished a stage that had failed, the record still held its
    ``errors/<stage>.txt``, so a finished run's record showed a failure, and a stage that failed again
    without a traceback (a lost worker) was named with the earlier failure's. The failed attempt's
    traceback is not lost: its MLflow stage run keeps a copy (``g00_train.txt``).
    """
    store.delete_file(traceback_path(run_id, stage))
    folder = store.local_path(record_path(run_id, ERRORS))
    if folder is not None:
        with contextlib.suppress(OSError):  # another stage's traceback is still there, or no folder at all
            folder.rmdir()


def done_in(stages: Any) -> frozenset[str]:
    """The stages a ledger's ``stages`` mapping records as done (state in DONE_STATES); none for anything else."""
    if not isinstance(stages, Mapping):
        return frozenset()
    return frozenset(
        name for name, entry in stages.items() if isinstance(entry, Mapping) and entry.get("state") in DONE_STATES
    )


def read_ledger(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The run's ledger as written last, or None before the run's first stage was planned.

    A read that races the running driver's rewrite can come back torn on an object store
    (pyarrow reads an S3 object in ranges after one HEAD; seen on the cluster tier: the first
    1178 bytes of a longer ledger), so a ledger that does not parse is read again.
    """
    for attempt in range(1, TORN_READ_ATTEMPTS + 1):
        data = store.read_record(record_path(run_id, LEDGER_FILE))
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            if attempt == TORN_READ_ATTEMPTS:
                raise ArtifactError(record_path(run_id, LEDGER_FILE), f"not valid JSON: {exc}") from exc
            time.sleep(TORN_READ_PAUSE_S)
    raise AssertionError("unreachable")


def read_command_record(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """The run's command record (``command.json``: config, overrides, rerun, driver, ray_address) as a dict.

    {} when the run has none or it is not a JSON object: every reader takes a missing key as "not
    recorded" (an older record, a run started before the key existed). A store that cannot be read
    raises ArtifactError, which each caller answers in its own way.
    """
    try:
        command = json.loads(store.read_record(record_path(run_id, COMMAND_FILE)) or b"{}")
    except ValueError:  # not JSON, or not UTF-8
        return {}
    return command if isinstance(command, dict) else {}


def write_ledger(store: ArtifactStore, run_id: str, data: Mapping[str, Any]) -> None:
    """Replace the run's ledger with ``data``, as ``read_ledger`` reads it back (the store writes records atomically)."""
    store.write_record(record_path(run_id, LEDGER_FILE), json.dumps(data, indent=2, default=str).encode())


def this_driver() -> dict[str, Any]:
    """This process as a run's driver: host and pid, and inside a Ray job the job's id and cluster.

    Why the job: a driver on another machine cannot be checked by its pid, and a run submitted as
    a job is checked by its job's status on its cluster instead (`relay resume`), and said to be
    resumed there (`relay submit --resume RUN --address URL`). The cluster's address is what
    `relay submit` passed in the job's environment (``JOB_ADDRESS_ENV``); the id is Ray's.
    """
    driver: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    job_id = _job_submission_id()
    if job_id is not None:
        driver["job_id"] = job_id
        if os.environ.get(JOB_ADDRESS_ENV):
            driver["job_address"] = os.environ[JOB_ADDRESS_ENV]
    return driver


def _job_submission_id() -> str | None:
    """The submission id of the Ray job this process is the entrypoint of (Ray's job config), else None."""
    try:
        metadata = json.loads(os.environ.get(RAY_JOB_ENV) or "{}").get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    job_id = metadata.get("job_submission_id") if isinstance(metadata, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


@dataclass(frozen=True)
class LedgerAsFound:
    """A run's ledger as a claim found it: its bytes (None: there was none) and, on a local store, its mtime."""

    raw: bytes | None
    mtime_ns: int | None


def claim_run(store: ArtifactStore, run_id: str) -> LedgerAsFound:
    """Record this process as the run's driver (status RUNNING) before a resume starts anything slow; returns the
    ledger as it was, to put back when the resume stops before its stages (``unclaim_run``).

    Why: a resume that named its driver only once Ray had started (tens of seconds) left a second
    `relay resume` of the same run, in that time, a ledger naming the dead driver: both ran the
    same stages into the same folders and MLflow run.
    """
    relative = record_path(run_id, LEDGER_FILE)
    local = store.local_path(relative)
    found = LedgerAsFound(store.read_record(relative), _mtime_ns(local))
    earlier = read_ledger(store, run_id)
    data = dict(earlier) if isinstance(earlier, dict) else {"run_id": run_id}
    data.update({"status": RunStatus.RUNNING, "updated": _now(), "driver": this_driver()})
    write_ledger(store, run_id, data)
    return found


def unclaim_run(store: ArtifactStore, run_id: str, found: LedgerAsFound) -> None:
    """Put the run's ledger back as ``claim_run`` found it, byte for byte and (on a local store) with its mtime:
    a resume refused as bad input after its claim leaves the record as it was, not merely equal to it."""
    relative = record_path(run_id, LEDGER_FILE)
    if found.raw is None:
        store._delete(relative)  # the store's own delete: a run without a ledger again
        return
    store.write_record(relative, found.raw)
    local = store.local_path(relative)
    if local is not None and found.mtime_ns is not None:
        os.utime(local, ns=(found.mtime_ns, found.mtime_ns))


def _mtime_ns(path: Path | None) -> int | None:
    try:
        return None if path is None else path.stat().st_mtime_ns
    except OSError:  # no ledger yet
        return None


def record_failed_start(store: ArtifactStore, run_id: str, why: str, started: str) -> None:
    """Record the run FAILED by an attempt that failed before its stages (Ray did not start), saying ``why``.

    Why: the ledger is the runner's to write, and an attempt whose Ray never started has no runner; the
    run had only its command record (or a resume's claim, RUNNING), whose driver then exited, so
    `relay runs` showed it INTERRUPTED ("the driver died or was stopped"), and the failure nowhere.
    An earlier attempt's ledger keeps its stages and its start; ``started`` is this attempt's.
    """
    earlier = read_ledger(store, run_id)
    data = dict(earlier) if isinstance(earlier, dict) else {"run_id": run_id, "stages": {}}
    data.update(
        {
            "status": RunStatus.FAILED,
            "started": data.get("started") or started,
            "updated": _now(),
            "driver": this_driver(),
            "start_error": why,
        }
    )
    write_ledger(store, run_id, data)


@contextlib.contextmanager
def failed_start_recorded(store: ArtifactStore, run_id: str) -> Iterator[None]:
    """A failure in the block (starting Ray, before the stages) is recorded as the run's (``record_failed_start``).

    A Ctrl-C or SIGTERM is not a failure: the run stays INTERRUPTED, resumable. A store that cannot
    take the record only warns: the failure itself is what the user must see.
    """
    started = _now()
    try:
        yield
    except Exception as exc:
        try:
            record_failed_start(store, run_id, str(exc), started)
        except ArtifactError as lost:
            logger.warning("could not record run %s as FAILED in its ledger: %s", run_id, lost)
        raise


def write_tracking(store: ArtifactStore, run_id: str, lost_at: str | None, tracking_uri: str) -> None:
    """Record whether the run's MLflow record is complete: ``lost_at`` is where the store stopped answering.

    Why here and not in MLflow: the store that stopped answering cannot be told, and `relay
    generations` read an incomplete record from it as a run without results, saying nothing.
    """
    data = {"complete": lost_at is None, "stopped_answering_at": lost_at, "tracking_uri": tracking_uri, "at": _now()}
    store.write_record(record_path(run_id, TRACKING_FILE), json.dumps(data, indent=2).encode())


def tracking_lost_at(store: ArtifactStore, run_id: str) -> str | None:
    """Where the tracking store stopped answering in the run's last attempt that reached it, None when complete.

    A record that cannot be read or parsed counts as none: it only adds a note.
    """
    try:
        data = json.loads(store.read_record(record_path(run_id, TRACKING_FILE)) or b"{}")
    except (ArtifactError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("complete", True) is not False:
        return None
    return str(data.get("stopped_answering_at") or "an unknown point")


@dataclass
class Ledger:
    """The run's record of stage states in the artifact store, rewritten atomically."""

    store: ArtifactStore
    pipeline: str
    run_id: str
    code_version: str | Mapping[str, str]
    seed: int
    stop_after: str | None
    generations: Mapping[int, int] = field(default_factory=dict)  # generation -> its number of stages
    started: str = ""
    earlier_stages: Mapping[str, Any] = field(default_factory=dict)  # what an earlier attempt recorded
    earlier_code: str | Mapping[str, str] | None = None  # the code versions an earlier attempt ran

    def __post_init__(self) -> None:
        """A resumed run keeps the start time its first attempt recorded, and that attempt's stage entries."""
        earlier = read_ledger(self.store, self.run_id) or {}
        self.started = self.started or earlier.get("started") or _now()
        stages = earlier.get("stages")
        self.earlier_stages = stages if isinstance(stages, dict) else {}
        self.earlier_code = earlier.get("code_version")

    def why_again(self, name: str, fingerprint: str, module: str) -> str | None:
        """Why a stage that an earlier attempt of this run finished must run again; None where it had not finished it.

        Why: a resume of a finished run after an upgrade of Relay (or an edit of a stage's code) ran
        every stage again without a word, where the run's own results had looked reusable. With a
        resume, the config and the data are the run's own (both checked), so a new fingerprint means
        the stage's code changed, or what it reads (an upstream stage that ran again).
        """
        entry = self.earlier_stages.get(name)
        if not isinstance(entry, dict) or entry.get("state") not in DONE_STATES:
            return None
        if entry.get("fingerprint") in (None, fingerprint):
            return None
        if _version_of(self.earlier_code, module) != _version_of(self.code_version, module):
            return f"the code of {module} changed since an earlier attempt of this run computed it"
        return "what it reads changed since an earlier attempt of this run computed it (an upstream stage ran again)"

    def attempts_of(self, name: str) -> int:
        """The attempts earlier drivers of this run made at stage ``name``, as their entries count them (0: none).

        Why: the run's count of a stage's attempts is the engine's, kept here across drivers, so a resume
        starts a stage a killed driver had begun at attempt 2, where the console said attempt 1 and MLflow 2.
        An entry of older Relay counted its own driver's attempts only; what it says is still a floor.
        """
        entry = self.earlier_stages.get(name)
        attempts = entry.get("attempts") if isinstance(entry, dict) else None
        return attempts if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts > 0 else 0

    def may_hold_traceback(self, name: str) -> bool:
        """Whether an earlier attempt may have kept a traceback of stage ``name`` in the record: its entry says it
        failed, or that it was running (the ledger write after the failure did not reach the store)."""
        entry = self.earlier_stages.get(name)
        return isinstance(entry, dict) and entry.get("state") in (StageState.FAILED, StageState.RUNNING)

    def write(self, status: RunStatus, stages: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the ledger with the run's ``status`` and each stage's entry (state, fingerprint, node, ...)."""
        data = {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": status,
            "code_version": self.code_version,
            "seed": self.seed,
            "stop_after": self.stop_after,
            "generations": {str(g): n for g, n in sorted(self.generations.items())},
            "started": self.started,
            "updated": _now(),
            "driver": this_driver(),
            "stages": {**{name: self._history(name, entry) for name, entry in stages.items()}, **self._beyond(stages)},
        }
        write_ledger(self.store, self.run_id, data)

    def _beyond(self, stages: Mapping[str, Any]) -> dict[str, Any]:
        """The earlier attempts' entries of stages this attempt does not plan (it stops before them: `--stop-after`).

        Why: a resume that stops after an earlier stage than a previous attempt reached rewrote the
        ledger with its own stages only, and the later stages the run had done vanished from it.
        """
        return {name: entry for name, entry in self.earlier_stages.items() if name not in stages}

    def _history(self, name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        """``entry``, or the earlier attempt's when this one only found that attempt's own output in the cache,
        or has not reached the stage yet.

        Why: a resume meets every stage its earlier attempts ran as a cache hit; writing "cached, 0 s"
        over "succeeded, 31 s" would erase what the run computed, where and how long it took. And a
        resume that ended before reaching a stage (Ctrl-C, a kill, an upstream failure) wrote it as
        pending with no fingerprint: the ledger no longer named the stage folder an earlier attempt
        had finished (or checkpointed into), so `relay gc` removed it and the next resume computed it
        again from its first step.
        """
        earlier = self.earlier_stages.get(name)
        if not isinstance(earlier, dict):
            return dict(entry)
        reused = entry.get("state") == StageState.CACHED and earlier.get("state") == StageState.SUCCEEDED
        if reused and earlier.get("fingerprint") == entry.get("fingerprint"):
            return dict(earlier)
        if _not_reached(entry) and earlier.get("fingerprint"):
            return dict(earlier)
        return dict(entry)


def _not_reached(entry: Mapping[str, Any]) -> bool:
    """Whether an attempt's entry is only its plan: pending, no fingerprint computed yet."""
    return entry.get("state") == StageState.PENDING and entry.get("fingerprint") is None


def _version_of(code: str | Mapping[str, str] | None, module: str) -> str | None:
    """The code version of ``module`` in a ledger's ``code_version`` (one for the whole run, or one per module)."""
    return code.get(module) if isinstance(code, Mapping) else code


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
