"""BackgroundTracker: calls keep their order, strict failures still reach the caller, end drains the queue."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.engine.records import StageRecord
from orchestrator.errors import TrackingError
from orchestrator.tracking.background import BackgroundTracker


class RecordingTracker:
    """A slow fake tracker that records which thread made each call, in order."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.parent_run_id: str | None = None

    def _call(self, name: str) -> None:
        time.sleep(0.01)
        self.threads.add(threading.current_thread().name)
        self.calls.append(name)
        if name == self.fail_on:
            raise TrackingError(f"{name} failed")

    def start_pipeline(self, run_id, pipeline_name, config, resume) -> None:
        self._call("start")
        self.parent_run_id = "parent-1"

    def stage_started(self, stage_name, generation, attempt=None) -> None:
        self._call(f"started {stage_name}")

    def stage_finished(self, record) -> None:
        self._call(f"finished {record.stage}")

    def end_pipeline(self, status) -> None:
        self._call(f"end {status}")


def record(stage: str) -> StageRecord:
    return StageRecord(stage=stage, generation=0, fingerprint="f", cache_hit=False, status="FINISHED")


def test_calls_run_in_order_off_the_callers_thread_and_end_drains() -> None:
    inner = RecordingTracker()
    tracker = BackgroundTracker(inner)
    tracker.start_pipeline("r", "p", {}, resume=False)
    for name in ("a", "b"):
        tracker.stage_started(name, 0)
        tracker.stage_finished(record(name))
    tracker.end_pipeline("FINISHED")
    assert inner.calls == ["start", "started a", "finished a", "started b", "finished b", "end FINISHED"]
    assert inner.threads == {"relay-tracking"}
    assert tracker.parent_run_id == "parent-1"


def test_a_strict_failure_is_raised_on_the_callers_next_call() -> None:
    tracker = BackgroundTracker(RecordingTracker(fail_on="started a"))
    tracker.start_pipeline("r", "p", {}, resume=False)
    tracker.stage_started("a", 0)
    with pytest.raises(TrackingError, match="started a failed"):
        tracker.flush()
    tracker.end_pipeline("FAILED")  # the error was delivered once; ending still works


def test_the_end_reports_a_failure_nobody_saw_yet() -> None:
    tracker = BackgroundTracker(RecordingTracker(fail_on="end FAILED"))
    with pytest.raises(TrackingError):
        tracker.end_pipeline("FAILED")


class GatedTracker(RecordingTracker):
    """A tracker whose stage and end calls wait until the test opens the gate: "not waited for" without a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def _call(self, name: str) -> None:
        if name != "start":
            self.gate.wait()
        super()._call(name)


def test_close_queues_the_end_without_waiting_and_join_waits_for_every_call() -> None:
    inner = GatedTracker()
    tracker = BackgroundTracker(inner)
    tracker.start_pipeline("r", "p", {}, resume=False)
    for name in "abcde":
        tracker.stage_finished(record(name))
    closer = threading.Thread(target=tracker.close, args=("FINISHED",), daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "close waited for the queued calls"  # the caller stops Ray meanwhile
    assert "end FINISHED" not in inner.calls  # the gate still holds every queued call
    inner.gate.set()
    tracker.join()
    assert inner.calls == ["start", *(f"finished {n}" for n in "abcde"), "end FINISHED"]
    tracker.close("FAILED")  # a second end changes nothing
    tracker.end_pipeline("FAILED")
    assert inner.calls[-1] == "end FINISHED" and inner.calls.count("end FINISHED") == 1


def test_join_raises_a_strict_failure_of_the_end() -> None:
    tracker = BackgroundTracker(RecordingTracker(fail_on="end FAILED"))
    tracker.close("FAILED")
    with pytest.raises(TrackingError):
        tracker.join()


def test_after_a_strict_failure_queued_stage_calls_are_dropped_and_the_end_still_made() -> None:
    """The run stops at the next call; the calls queued meanwhile are not made (each could cost a dead
    server's retries before the process can exit), the end still is, so the opened runs get closed."""
    inner = RecordingTracker(fail_on="started a")
    tracker = BackgroundTracker(inner)
    tracker.start_pipeline("r", "p", {}, resume=False)
    tracker.stage_started("a", 0)
    tracker.stage_finished(record("a"))  # queued before the failure was seen
    tracker.stage_started("b", 0)
    with pytest.raises(TrackingError, match="started a failed"):
        tracker.flush()
    tracker.end_pipeline("FAILED")
    assert inner.calls == ["start", "started a", "end FAILED"]


def test_the_runners_next_call_after_a_strict_failure_raises_it() -> None:
    tracker = BackgroundTracker(RecordingTracker(fail_on="start"))
    tracker.start_pipeline("r", "p", {}, resume=False)
    deadline = time.monotonic() + 5
    while tracker._error is None and time.monotonic() < deadline:  # the thread has made the failing call
        time.sleep(0.01)
    with pytest.raises(TrackingError, match="start failed"):
        tracker.stage_started("a", 0)
    tracker.end_pipeline("FAILED")
