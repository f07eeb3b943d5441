"""A Ctrl-C (or SIGTERM) as a run ends, while its MLflow store is still being made elsewhere: one line, no wait for MLflow.

CI, once: the Ctrl-C landed in the Runner's write of the FINISHED ledger. `relay run` took it for a Ctrl-C during
the stages: it closed the MLflow runs KILLED though the ledger said FINISHED, said nothing, and joined the tracking
thread, which waited on the store's creation lock another process held, for good. Now the Runner notes how the run
ended before the Ctrl-C is raised (``Runner.ended_as``), and `relay run`'s end closes the MLflow runs as the ledger says
and gives MLflow a bounded time (``TRACKING_GRACE_S``) to finish; past it, the line says how to fill the record in
(as for a Ctrl-C while the run waits for MLflow, ``tracking_cut_short_said``). The run is real (the toy pipeline, LocalExecutor, a real store and
ledger, a real SIGINT to this process); the MLflow store is a tracker whose start waits like a store being created.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import pytest

from orchestrator.cli.run import execution
from orchestrator.cli.run.execution import Handover, PreparedRun, run_stages
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine import signals
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import RunStatus
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.background import BackgroundTracker
from orchestrator.tracking.pipeline_run import START
from tests.unit.orchestrator.engine.toy import (
    RecordingTracker,
    ctrl_c_after_ledger_write,
    sigterm_as_relay_run_takes_it,
    toy,
)

STORE_MADE_ELSEWHERE_S = 60.0  # how long the old code's join waited before the store "appeared"


class ToyConfig(PipelineConfig):
    """A run's settings: the toy pipeline in a workspace."""


SPEC = PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: toy(), summary={})


class StoreBeingMadeElsewhere(RecordingTracker):
    """A tracker whose start waits, as MLflow's does on a store another process is creating (its lock held)."""

    lost_at: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.store_made = threading.Event()
        self.ended_with: list[str] = []

    def start_pipeline(self, run_id, pipeline_name, config, resume):
        self.store_made.wait(STORE_MADE_ELSEWHERE_S)

    def end_pipeline(self, status):
        self.ended_with.append(status)


# the signal, what it raises, and how the wait for MLflow is said (SIGTERM: a supervisor, `timeout`, Kubernetes)
SIGNALS = {
    "ctrl-c": (signal.SIGINT, KeyboardInterrupt, "interrupted as the run ended", "press Ctrl-C again to stop now"),
    "sigterm": (signal.SIGTERM, signals.Terminated, "terminated as the run ended", "send SIGTERM again to stop now"),
}


@pytest.mark.parametrize("sent", list(SIGNALS))
def test_a_signal_as_the_finished_ledger_is_written_says_one_line_and_does_not_wait_for_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sent: str
) -> None:
    """Before, a SIGTERM there closed MLflow KILLED against a FINISHED ledger and waited for the tracker for good."""
    signum, raised, said_how, said_again = SIGNALS[sent]
    ctrl_c_after_ledger_write(monkeypatch, RunStatus.FINISHED, signum)
    monkeypatch.setattr(execution, "TRACKING_GRACE_S", 2.0)  # the store is made after 60 s: past any grace
    config = ToyConfig(
        pipeline="toy",
        name="toy",
        run=RunSettings(workspace=str(tmp_path)),
        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    store = ArtifactStore(str(tmp_path / "artifacts"))
    run = PreparedRun(SPEC, config, "ending", toy(), store, None, executor=LocalExecutor())
    inner = StoreBeingMadeElsewhere()
    tracker = BackgroundTracker(inner)
    tracker.start_pipeline("ending", "toy", {}, resume=False)
    try:
        with caplog.at_level(logging.WARNING), sigterm_as_relay_run_takes_it(), pytest.raises(raised):
            run_stages(run, tracker, tmp_path / "copies", Handover())
        not_waited_for = not inner.store_made.is_set() and tracker._thread.is_alive()
    finally:
        inner.store_made.set()  # the store is made: what was queued drains
        tracker.join()
    assert not_waited_for, f"the run's end waited for the tracker after the {sent}"
    cut_short = "terminated" if sent == "sigterm" else "interrupted"  # as the grace notice words it
    said = [r.getMessage() for r in caplog.records if f"{cut_short} while MLflow recorded run ending" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert f"{said_how}: giving MLflow up to 2 s more to finish its record; {said_again}" in caplog.text
    assert "the run itself ended FINISHED" in said[0] and "fill it in with: relay resume ending" in said[0]
    assert inner.ended_with == [RunStatus.FINISHED], "the MLflow runs close as the ledger says the run ended"
    assert inner.lost_at == START  # the run's record says its MLflow record stops before the parent run


class StopsWithASignalHeldWhileRayStopped:
    """An executor whose shutdown raises, once Ray has stopped, the SIGTERM it held meanwhile
    (``signals.signals_held_through_shutdown``; the real one: tests/integration/test_sigterm_after_ray_stops.py)."""

    def shutdown(self) -> None:
        raise signals.Terminated


def test_a_signal_held_while_ray_stopped_gives_mlflow_the_grace_not_a_wait_without_end(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the run's end then joined the tracker without a bound (its store being made elsewhere: for good)."""
    monkeypatch.setattr(execution, "TRACKING_GRACE_S", 1.0)
    inner = StoreBeingMadeElsewhere()
    tracker = BackgroundTracker(inner)
    tracker.start_pipeline("ending", "toy", {}, resume=False)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(signals.Terminated):
            execution.wind_down(tracker, RunStatus.FINISHED, StopsWithASignalHeldWhileRayStopped(), None)
        not_waited_for = not inner.store_made.is_set() and tracker._thread.is_alive()
    finally:
        inner.store_made.set()
        tracker.join()
    assert not_waited_for, "the run's end waited for the tracker after the SIGTERM"
    assert "terminated as the run ended: giving MLflow up to 1 s more" in caplog.text
    assert inner.ended_with == [RunStatus.FINISHED]
