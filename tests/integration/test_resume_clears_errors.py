"""A stage that failed, then was finished by `relay resume`, leaves no traceback behind in the run record.

Before, ``runs/<run id>/errors/<stage>.txt`` stayed after the resume finished the stage: a FINISHED run's
record showed a failure, and a stage that failed again without a traceback of its own (a lost worker) was
named, by the notes `relay generations` and `relay status` print (``run_notes.traceback_kept``), with the
earlier failure's traceback. The failed attempt's traceback is not lost: its MLflow stage run keeps a copy.

Real pieces: a local Ray (2 CPUs) running the stage, the artifact store on disk, an MLflow SQLite store. The
stage fails while a file it checks says so (the cause a user fixes between the run and its resume).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.cli.records.run_notes import traceback_kept
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RunStatus, StageState, read_ledger
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.runner import Runner
from orchestrator.errors import StageError
from orchestrator.tracking.common import TAG_STAGE
from orchestrator.tracking.interruptions import TAG_ATTEMPT
from orchestrator.tracking.mlflow_tracker import MlflowTracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STAGE = "g00/flaky"
RUN_ID = "run-1"


def flaky(ctx, inputs, params):
    """Fails as its cause file says while there is one: ``raise`` (an error with a traceback) or ``crash`` (the
    worker process dies, so the failure carries none); without the file it succeeds."""
    cause = Path(params["cause"])
    if cause.exists():
        if cause.read_text() == "crash":
            os._exit(1)
        raise ValueError(f"the stage's input is broken: see {cause}")
    return StageResult(outputs={"kept": {"w": 1.0}})


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def attempt(tmp_path: Path, executor: RayExecutor, resume: bool) -> BaseException | None:
    """One attempt of the run, as `relay run` (``resume`` False) or `relay resume` drives it: the tracker's
    pipeline run opened around the runner and closed with the run's outcome; the error it failed with, if any."""
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay")
    tracker.start_pipeline(RUN_ID, "toy", {"seed": 0}, resume=resume)
    pipeline = Pipeline(
        "toy", [Stage(STAGE, flaky, (), ("kept",), generation=0, params={"cause": str(tmp_path / "cause")})]
    )
    try:
        Runner(ArtifactStore(str(tmp_path / "store")), executor, tracker, "v1", seed=0).run(pipeline, RUN_ID)
    except StageError as exc:
        tracker.end_pipeline("FAILED")
        return exc
    tracker.end_pipeline("FINISHED")
    return None


def stage_entry(tmp_path: Path) -> dict:
    ledger = read_ledger(ArtifactStore(str(tmp_path / "store")), RUN_ID)
    assert ledger is not None
    return ledger["stages"][STAGE]


def failed_first(tmp_path: Path, executor: RayExecutor) -> Path:
    """The run's first attempt, failed by the stage with its traceback kept; the kept file's path."""
    (tmp_path / "cause").write_text("raise")
    assert attempt(tmp_path, executor, resume=False) is not None
    kept = tmp_path / "store" / "runs" / RUN_ID / "errors" / "g00_flaky.txt"
    assert kept.is_file() and "the stage's input is broken" in kept.read_text()
    assert traceback_kept(ArtifactStore(str(tmp_path / "store")), RUN_ID, STAGE) == f" (its traceback: {kept})"
    return kept


def test_a_resume_that_finishes_the_failed_stage_removes_its_kept_traceback(tmp_path, ray_executor) -> None:
    kept = failed_first(tmp_path, ray_executor)
    (tmp_path / "cause").unlink()  # the user fixes the cause
    assert attempt(tmp_path, ray_executor, resume=True) is None
    record = tmp_path / "store" / "runs" / RUN_ID
    assert not kept.exists(), f"the finished stage's old traceback is still in the record: {kept.read_text()}"
    assert not (record / "errors").exists(), sorted(p.name for p in (record / "errors").iterdir())
    entry = stage_entry(tmp_path)
    assert entry["state"] == StageState.SUCCEEDED and entry["traceback"] is None, entry
    assert json.loads((record / "ledger.json").read_text())["status"] == RunStatus.FINISHED
    assert traceback_kept(ArtifactStore(str(tmp_path / "store")), RUN_ID, STAGE) == ""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("relay").experiment_id], f"tags.`{TAG_STAGE}` = '{STAGE}'")
    by_attempt = {run.data.tags[TAG_ATTEMPT]: run for run in runs}
    assert {n: r.info.status for n, r in by_attempt.items()} == {"1": "FAILED", "2": "FINISHED"}, by_attempt
    logged = [item.path for item in client.list_artifacts(by_attempt["1"].info.run_id)]
    assert logged == ["g00_flaky.txt"], logged
    history = client.download_artifacts(by_attempt["1"].info.run_id, logged[0], str(tmp_path / "downloaded"))
    assert "the stage's input is broken" in Path(history).read_text(), "the failed attempt's traceback left MLflow"


def test_a_stage_that_fails_again_without_a_traceback_is_not_given_the_earlier_one(tmp_path, ray_executor) -> None:
    kept = failed_first(tmp_path, ray_executor)
    (tmp_path / "cause").write_text("crash")  # the resume's failure is a lost worker: no traceback of its own
    error = attempt(tmp_path, ray_executor, resume=True)
    assert error is not None and "WorkerLostError" in str(error), error
    entry = stage_entry(tmp_path)
    assert entry["state"] == StageState.FAILED and entry["traceback"] is None, entry
    assert not kept.exists(), f"the earlier failure's traceback stands for this one: {kept.read_text()}"
    assert traceback_kept(ArtifactStore(str(tmp_path / "store")), RUN_ID, STAGE) == ""
