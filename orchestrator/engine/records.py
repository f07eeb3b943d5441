"""What the runner reports about a run, and to whom: the Tracker protocol and its records.

The runner speaks only this protocol; tracking/ implements it (MLflow, in the background),
so the engine never imports a tracking backend and tracking depends on the engine, not the
reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.engine.ledger import RunStatus


@dataclass(frozen=True)
class TrackedArtifact:
    """A stored stage output as the tracker sees it: where it lives, its digest, what it is."""

    name: str
    uri: str  # a URI MLflow can resolve (file:///..., s3://...)
    digest: str  # of the stored bytes (orchestrator.engine.digests)
    kind: str  # "table" | "checkpoint"
    lineage: str | None = None  # "model" | "dataset" | None
    local_path: str | None = None  # set when the bytes are on this machine
    meta: Mapping[str, Any] = field(default_factory=dict)  # a checkpoint's plain values (model name, classes...)


@dataclass
class StageRecord:
    """What the driver knows about one finished (or skipped, or failed) stage."""

    stage: str
    generation: int | None
    fingerprint: str
    cache_hit: bool
    status: RunStatus  # FINISHED (ran, or a cache hit) or FAILED
    metrics: dict[str, float] = field(default_factory=dict)
    series: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # name -> local path
    duration_s: float = 0.0
    error: str | None = None
    inputs: tuple[str, ...] = ()  # artifact names the stage read
    outputs: dict[str, TrackedArtifact] = field(default_factory=dict)  # what it stored (for lineage)
    input_roles: dict[str, str] | None = None  # role -> input artifact, as the stage's io names them (lineage)
    attempts: int = 0  # the run's attempts at the stage over all its drivers, as the ledger counts them (0: cached)


class Tracker(Protocol):
    """What the runner tells a tracker; MLflow is one implementation, a test fake another."""

    @property
    def parent_run_id(self) -> str | None: ...

    def start_pipeline(self, run_id: str, pipeline_name: str, config: Mapping[str, Any], resume: bool) -> None: ...

    def stage_started(self, stage_name: str, generation: int | None, attempt: int | None = None) -> None:
        """Attempt ``attempt`` of a stage starts: the engine's number, counted over every driver of the run.

        The first attempt a driver makes opens the stage's tracked run; a retry's number goes on the same run.
        None (a caller that does not count) leaves the counting to the tracker.
        """
        ...

    def stage_finished(self, record: StageRecord) -> None: ...

    def end_pipeline(self, status: str) -> None: ...


class NullTracker:
    """Tracks nothing: for the tests and test harnesses that drive a `Runner` without MLflow.

    Relay itself never switches tracking off: the one `Runner` it builds (orchestrator/cli/run/execution.py)
    gets an MLflow tracker. It lives here, beside the `Tracker` protocol, because tests in tests/unit
    and tests/integration and the cluster tier's driver (tests/cluster/driver.py) all share it.
    """

    parent_run_id: str | None = None

    def start_pipeline(self, run_id: str, pipeline_name: str, config: Mapping[str, Any], resume: bool) -> None:
        """Nothing to record."""

    def stage_started(self, stage_name: str, generation: int | None, attempt: int | None = None) -> None:
        """Nothing to record."""

    def stage_finished(self, record: StageRecord) -> None:
        """Nothing to record."""

    def end_pipeline(self, status: str) -> None:
        """Nothing to record."""
