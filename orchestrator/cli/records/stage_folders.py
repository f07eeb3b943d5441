"""The stage folders runs use, counted by the ledgers that name them, and the runs that hold back removing any.

Stage folders (``stages/FINGERPRINT/``, plus a data-parallel stage's ``ray_train/FINGERPRINT16-STAGE/``)
are a cache shared by every run whose stages fingerprint the same, so one is free only when no
other run's ledger names it: the ledgers are the reference counts. A run that may be running
(RUNNING or STARTING with a driver that lives, or cannot be checked from here:
``resume_guard.check_not_running``) may at any moment take a stage folder as a cache hit, and names
it in its ledger only after reading it; so while one exists no stage folder is removed at all.
Apart from the commands because `relay delete` and `relay gc` count and hold back the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.run import resume_guard
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore
from orchestrator.engine.ledger import read_ledger, record_path
from orchestrator.errors import ArtifactError, ConfigError

STAGES = "stages"
FINGERPRINT_PREFIX = 16  # how much of a fingerprint names a data-parallel stage's Ray Train folder (train_run_name)
SHOWN_FINGERPRINT = 12  # as the runner's log lines show one


@dataclass(frozen=True)
class StageFolder:
    """One stage's folder in the store, with the Ray Train folders of the same fingerprint, and their bytes."""

    fingerprint: str
    stage: str  # the stage's name, from its manifest or a ledger; "" when neither says
    complete: bool  # its manifest exists: the outputs were all written
    size: int
    train_runs: tuple[str, ...] = ()

    def paths(self) -> list[str]:
        return [f"{STAGES}/{self.fingerprint}", *(f"{TRAIN_DIR}/{name}" for name in self.train_runs)]

    def line(self) -> str:
        what = self.stage or "?"
        if not self.complete:
            what += " (incomplete: no manifest, from an attempt that failed or was cut off)"
        return f"    {STAGES}/{self.fingerprint[:SHOWN_FINGERPRINT]}…  {what}  {human_size(self.size)}"


@dataclass(frozen=True)
class Ledgers:
    """Every run's ledger as read: the fingerprints each names, the stage names, and the ledgers that cannot be read."""

    by_run: dict[str, frozenset[str]]
    stage_names: dict[str, str]
    unreadable: dict[str, str]  # run id -> why

    def named_by(self, run_ids: Iterable[str]) -> set[str]:
        return {fingerprint for run_id in run_ids for fingerprint in self.by_run.get(run_id, ())}


def human_size(size: int) -> str:
    """``1.2 MiB``: bytes in binary units, as `du -h` counts them."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def read_ledgers(store: ArtifactStore, run_ids: Iterable[str]) -> Ledgers:
    """The fingerprints every run's ledger names, in any state: a failed or interrupted stage's folder holds
    the in-stage checkpoints its `relay resume` goes on from, so it counts as used as much as a finished one."""
    by_run: dict[str, frozenset[str]] = {}
    names: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for run_id in sorted(run_ids):
        try:
            ledger = read_ledger(store, run_id)
        except ArtifactError as exc:
            unreadable[run_id] = str(exc)
            continue
        if ledger is not None and not isinstance(ledger, dict):
            unreadable[run_id] = f"{record_path(run_id, 'ledger.json')}: not a JSON object"
            continue
        stages = (ledger or {}).get("stages")
        entries = {
            name: entry["fingerprint"]
            for name, entry in (stages.items() if isinstance(stages, dict) else ())
            if isinstance(entry, dict) and isinstance(entry.get("fingerprint"), str)
        }
        by_run[run_id] = frozenset(entries.values())
        names.update({fingerprint: name for name, fingerprint in entries.items()})
    return Ledgers(by_run, names, unreadable)


def stage_folders(store: ArtifactStore, fingerprints: Iterable[str], names: Mapping[str, str]) -> list[StageFolder]:
    """The folders of ``fingerprints`` that exist in the store, with their Ray Train folders and sizes."""
    present = set(store.subfolders(STAGES))
    trains = store.subfolders(TRAIN_DIR)
    found = []
    for fingerprint in sorted(set(fingerprints) & present):
        manifest = store.read_manifest(fingerprint)
        own_trains = tuple(name for name in trains if name[:FINGERPRINT_PREFIX] == fingerprint[:FINGERPRINT_PREFIX])
        size = store.folder_bytes(f"{STAGES}/{fingerprint}")
        size += sum(store.folder_bytes(f"{TRAIN_DIR}/{name}") for name in own_trains)
        stage = manifest.stage if manifest is not None else names.get(fingerprint, "")
        found.append(StageFolder(fingerprint, stage, manifest is not None, size, own_trains))
    return found


def may_be_running(store: ArtifactStore, run_id: str, driver_gone: bool = False, command: str = "gc") -> str | None:
    """Why run ``run_id`` may still be running (resume_guard's refusal, its ways on said for ``command``: "delete"
    when the run itself is to go, "gc" when it holds back removing folders); None when it is not running."""
    if not run_status(store, run_id).is_live:  # a dead driver here reads INTERRUPTED: not running
        return None
    try:
        resume_guard.check_not_running(store, run_id, driver_gone)
    except ConfigError as exc:
        problem = " ".join(exc.problems)
        return for_deletion(problem, run_id) if command == "delete" else for_gc(problem)
    return None


def for_deletion(problem: str, run_id: str) -> str:
    """resume_guard's refusal of a resume, with its ways on said for a deletion (`relay delete ... --driver-gone`)."""
    problem = re.sub(r"if its head is lost, resume it on a new cluster: [^;]*; ", "", problem)
    problem = problem.replace(f"relay resume {run_id}", f"relay delete {run_id}")
    problem = problem.replace("resume here with:", "delete it here with:").replace("resume with:", "delete it with:")
    return problem.replace("then resume", "then delete it")


def for_gc(problem: str) -> str:
    """resume_guard's refusal of a resume, for a run that holds back `relay gc`: once it ends, gc may go on
    (resuming a run whose driver is gone, as the refusal says, settles it too)."""
    return problem.replace("then resume", "then run `relay gc` again")


def live_runs(store: ArtifactStore, run_ids: Iterable[str]) -> list[str]:
    """A sentence for each run that may still be running, and so holds back removing stage folders."""
    return [reason for run_id in sorted(run_ids) if (reason := may_be_running(store, run_id)) is not None]


def held_back(store: ArtifactStore, ledgers: Ledgers, run_ids: Iterable[str]) -> list[str]:
    """Why no stage folder may be removed now: runs among ``run_ids`` that may be running, or whose ledger
    cannot be read (what it names is unknown)."""
    wanted = set(run_ids)
    unreadable = [
        f"the ledger of run {run_id} cannot be read ({why}), so which stage folders it uses is unknown; repair it, "
        f"or delete the run (relay delete {run_id})"
        for run_id, why in sorted(ledgers.unreadable.items())
        if run_id in wanted
    ]
    return live_runs(store, wanted) + unreadable
