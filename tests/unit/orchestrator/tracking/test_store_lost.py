"""A tracking store that stops answering mid-run: one failed call, not two, and where it happened is kept.

Before the fix, the warning came ~35 s after the server was killed while the doc said retries cost about 7 s: the stage
running at the kill makes no MLflow call until it ends, and then its stage_finished made two calls to the
dead server (the failed log, then closing the stage run in a `finally`), each costing the client's retries.
"""

from __future__ import annotations

import logging

from mlflow.exceptions import MlflowException

from orchestrator.engine.records import StageRecord
from orchestrator.tracking.mlflow_tracker import MlflowTracker

REFUSED = (
    "API request to http://127.0.0.1:5055/api/2.0/mlflow/runs/log-batch failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=5055): Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch "
    "(Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=5055): Failed to establish a new "
    'connection: [Errno 111] Connection refused"))'
)


class DeadServer:
    """Stands for the MlflowClient of a server that was killed: every call fails as MLflow's does, and is counted."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append(name)
            raise MlflowException(REFUSED)

        return call


def record(stage: str) -> StageRecord:
    return StageRecord(stage, 0, f"fp-{stage}", False, "FINISHED", metrics={"loss": 0.5})


def test_a_store_lost_at_a_stage_s_end_costs_one_call_and_names_the_stage(tmp_path, caplog) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay")
    tracker.start_pipeline("run-lost", "toy", {}, resume=False)
    tracker.stage_started("g00/train", 0)
    dead = tracker._client = DeadServer()  # the server dies while g00/train runs

    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking"):
        tracker.stage_finished(record("g00/train"))
        tracker.stage_started("g00/evaluate", 0)
        tracker.stage_finished(record("g00/evaluate"))
        tracker.end_pipeline("FINISHED")

    assert dead.calls == ["log_batch"], "closing the stage run would cost the client's retries a second time"
    assert tracker.store_unreachable and tracker.lost_at == "g00/train"
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1 and "stopped answering at g00/train" in said[0] and "incomplete" in said[0]


def test_a_store_lost_at_the_end_says_so(tmp_path) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay")
    tracker.start_pipeline("run-end", "toy", {}, resume=False)
    tracker.stage_finished(record("g00/train"))
    tracker._client = DeadServer()
    tracker.end_pipeline("FINISHED")
    assert tracker.lost_at == "the run's end"
