"""What a run knows of its stages: each one's outcome, the summary a run returns, and the state it keeps
while it runs, with its writes of the run record.

Apart from the runner's loop because none of it depends on how stages are scheduled: these are the
records the loop updates (each stage's ledger entry, the summary its caller reads) and the rule for
a run record the store will not take (noted once after a stage failed, never asked again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.ledger import Ledger, RunStatus, StageState, write_traceback
from orchestrator.engine.manifests import ArtifactRef, Manifest
from orchestrator.engine.task import StageTask
from orchestrator.errors import ArtifactError, StageError

logger = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    """One stage's state in a run, as written to the ledger (with its metrics, for `relay runs`)."""

    generation: int | None = None
    state: StageState = StageState.PENDING
    fingerprint: str | None = None
    attempts: int = 0
    duration_s: float = 0.0
    error: str | None = None
    traceback: str | None = None  # where the run record keeps the failure's traceback (``ledger.traceback_path``)
    node: str | None = None  # the Ray node id where the stage ran (from its manifest)
    metrics: dict[str, float] = field(default_factory=dict)
    submitted_at: float | None = None  # monotonic time of the first attempt's submission (not in the ledger)

    def ledger_entry(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "state": self.state.value,
            "fingerprint": self.fingerprint,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "traceback": self.traceback,
            "node": self.node,
            "metrics": self.metrics,
        }


@dataclass
class RunSummary:
    """What a run did: its status and every stage's outcome."""

    run_id: str
    status: RunStatus
    stages: dict[str, StageOutcome]
    manifests: dict[str, Manifest] = field(default_factory=dict)

    def names(self, state: StageState) -> list[str]:
        """Stage names in ``state`` (e.g. which stages were cache hits)."""
        return [name for name, outcome in self.stages.items() if outcome.state is state]


@dataclass
class RunState:
    """Mutable bookkeeping of one run; lives only inside Runner.run."""

    pipeline: Pipeline
    run_id: str
    pending: list[Stage]
    outcomes: dict[str, StageOutcome]
    ledger: Ledger
    refs: dict[str, ArtifactRef] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    in_flight: dict[Any, StageTask] = field(default_factory=dict)
    failure: StageError | None = None
    rerun: Collection[str] = ()
    twins: set[str] = field(default_factory=set)  # pending stages another run is computing (``stage_claims``)
    record_lost: ArtifactError | None = None  # the first ledger write the store failed after a stage had failed

    def write_ledger(self, status: RunStatus) -> None:
        """Rewrite the ledger. Once a stage has failed, a ledger the store cannot take is noted, not raised:
        the same broken store usually failed the stage's output first (an S3 endpoint gone mid-run),
        and the run's last line named the ledger rather than the stage. After one such write the run
        asks no more: another would wait out the store's timeouts again (90 s on a silent store) to
        record what the run's last line already says."""
        if self.record_lost is not None:
            return
        try:
            self.ledger.write(status, {name: o.ledger_entry() for name, o in self.outcomes.items()})
        except ArtifactError as exc:
            if self.failure is None:
                raise
            self._lost(exc)

    def write_traceback(self, stage: str, attempts: int, text: str) -> str | None:
        """Keep a failed stage's traceback in the run record; its path there, or None when the store did not
        take it. Written once the failure is known, so a store that fails it is noted as a lost ledger write
        is (``write_ledger``): the ledger, on the same store, is not asked again."""
        if self.record_lost is not None:
            return None
        try:
            return write_traceback(self.ledger.store, self.run_id, stage, attempts, text)
        except ArtifactError as exc:
            self._lost(exc)
            return None

    def _lost(self, exc: ArtifactError) -> None:
        """Note the first record write the store failed after a stage had failed (``record_lost``), once."""
        if self.record_lost is None:
            logger.warning("could not update the run record: %s", exc)
        self.record_lost = self.record_lost or exc


class UnrecordedStageError(StageError):
    """A stage failed and the run record could not say so (the store failed both): the message adds what
    `relay runs` shows meanwhile and when `relay resume` can go on, so the run's last line says it all."""

    def __init__(
        self, stage: str, cause: BaseException, attempts: int, note: str, traceback_at: str | None = None
    ) -> None:
        super().__init__(stage, cause, attempts, traceback_at)
        self.note = note
        self.args = (f"{self.args[0]}; {note}",)

    def __reduce__(self):
        return (type(self), (self.stage, self.cause, self.attempts, self.note, self.traceback_at), dict(self.__dict__))


def wall_time(outcome: StageOutcome, manifest: Manifest) -> float:
    """A stage's seconds from its first submission to its result: what sizing a run needs.

    The manifest's own duration is the body's; it leaves out what came before the body ran (Ray
    Train's controller and worker group: 90 s of a 135 s stage on a loaded cluster, and retries).
    """
    if outcome.submitted_at is None:
        return manifest.duration_s
    return max(manifest.duration_s, time.monotonic() - outcome.submitted_at)


def mark_interrupted(st: RunState) -> None:
    """Stages cut off mid-run go back to pending (they did not fail) and the ledger says INTERRUPTED."""
    for outcome in st.outcomes.values():
        if outcome.state is StageState.RUNNING:
            outcome.state = StageState.PENDING
    st.write_ledger(RunStatus.INTERRUPTED)
