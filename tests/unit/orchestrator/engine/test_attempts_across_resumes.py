"""One count of a stage's attempts over a run's drivers: the console's "attempt N", the ledger's `attempts`,
the task the executor gets and MLflow's `relay.attempt` agree after a resume.

Before, the runner counted a driver's own attempts (a resumed stage said "attempt 1", and the ledger 1) while
the tracker counted the stage's MLflow runs (`relay.attempt` 2). Real pieces: a Ledger in a tmp store, the
runner with its in-process executor, and MlflowTracker on a sqlite store in tmp_path. A driver cut off
mid-stage is a stage body raising KeyboardInterrupt (Ctrl-C) with its tracker never ended, as a SIGKILL
leaves it; the real SIGKILL is tests/integration/test_fault_tolerance.py's.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.ledger import RunStatus, StageState
from orchestrator.engine.runner import Runner
from orchestrator.errors import StageError
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.unit.orchestrator.engine.toy import evaluate, make_data, train

EXPERIMENT = "attempts"
SUBMITTED: list[tuple[str, int]] = []  # (stage, attempt) of every task the executor was given


class RecordingExecutor(LocalExecutor):
    """The in-process executor, noting the attempt number of every task it is handed."""

    def submit(self, task):
        SUBMITTED.append((task.stage.name, task.attempt))
        return super().submit(task)


@pytest.fixture(autouse=True)
def clear_submitted():
    SUBMITTED.clear()


def stopping_train(ctx, inputs, params):
    """The toy's train, cut off (Ctrl-C) while ``params["cut"]`` exists, and failing transiently while
    ``params["fail"]`` holds a count above 0 (one failure per count)."""
    if Path(params["cut"]).exists():
        raise KeyboardInterrupt
    fail = Path(params["fail"])
    if fail.exists() and int(fail.read_text()) > 0:
        fail.write_text(str(int(fail.read_text()) - 1))
        raise RuntimeError("the node went away")
    return train(ctx, inputs, {"lr": 0.5})


def pipeline(tmp_path: Path, retries: int = 0) -> Pipeline:
    params = {"cut": str(tmp_path / "cut"), "fail": str(tmp_path / "fail")}
    return Pipeline(
        "toy",
        [
            Stage("data", make_data, (), ("data",), params={"rows": 4, "scale": 1.0}),
            Stage("g00/train", stopping_train, ("data",), ("model",), params=params, generation=0, retries=retries),
            Stage("g00/evaluate", evaluate, ("model",), ("report",), generation=0),
        ],
    )


def tracker(tmp_path: Path) -> MlflowTracker:
    root = tmp_path / "mlflow"
    root.mkdir(exist_ok=True)
    return MlflowTracker(f"sqlite:///{root / 'mlflow.db'}", EXPERIMENT, artifact_location=(root / "artifacts").as_uri())


def drive(tmp_path: Path, run_id: str, resume: bool, retries: int = 0, rerun=()):
    """One driver of the run: a tracker and a runner, as `relay run` / `relay resume` make them; its summary,
    None for a driver cut off (its tracker is not ended: its runs stay RUNNING, as a killed driver leaves
    them) or a run that failed."""
    own = tracker(tmp_path)
    own.start_pipeline(run_id, "toy", {"seed": 0}, resume=resume)
    runner = Runner(ArtifactStore(str(tmp_path / "artifacts")), RecordingExecutor(), own, "v1", seed=0)
    try:
        summary = runner.run(pipeline(tmp_path, retries), run_id, rerun=rerun)
    except KeyboardInterrupt:
        return None
    except StageError:
        own.end_pipeline("FAILED")
        return None
    own.end_pipeline(summary.status.value)
    return summary


def ledger_attempts(tmp_path: Path, run_id: str) -> dict[str, int]:
    stages = json.loads((tmp_path / "artifacts" / "runs" / run_id / "ledger.json").read_text())["stages"]
    return {name: entry["attempts"] for name, entry in stages.items()}


def mlflow_attempts(tmp_path: Path, run_id: str, stage: str) -> list[tuple[str, str]]:
    """(relay.attempt, status) of the stage's MLflow runs, lowest attempt first."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    query = f"tags.`relay.pipeline_run` = '{run_id}' and tags.`relay.stage` = '{stage}'"
    return sorted((r.data.tags["relay.attempt"], r.info.status) for r in client.search_runs([experiment], query))


def said_attempts(text: str, stage: str) -> list[int]:
    """The attempt numbers of the runner's "run STAGE (attempt N, ..." lines."""
    return [int(n) for n in re.findall(rf"run {re.escape(stage)} \(attempt (\d+),", text)]


def cut_off_during_train(tmp_path: Path, run_id: str) -> None:
    """A first driver that finished `data` and was cut off in `g00/train`'s first attempt."""
    (tmp_path / "cut").touch()
    assert drive(tmp_path, run_id, resume=False) is None
    (tmp_path / "cut").unlink()
    assert ledger_attempts(tmp_path, run_id) == {"data": 1, "g00/train": 1, "g00/evaluate": 0}


def test_a_resumed_stage_is_attempt_2_on_the_console_the_ledger_the_task_and_mlflow(tmp_path, caplog):
    cut_off_during_train(tmp_path, "run-cut")
    SUBMITTED.clear()
    caplog.set_level(logging.INFO, logger="orchestrator")
    summary = drive(tmp_path, "run-cut", resume=True)
    assert summary is not None and summary.status is RunStatus.FINISHED
    assert said_attempts(caplog.text, "g00/train") == [2], caplog.text
    assert ("g00/train", 2) in SUBMITTED
    assert summary.stages["g00/train"].attempts == 2
    assert ledger_attempts(tmp_path, "run-cut")["g00/train"] == 2
    assert mlflow_attempts(tmp_path, "run-cut", "g00/train") == [("1", "KILLED"), ("2", "FINISHED")]
    # a stage the run had not reached before starts at 1 everywhere
    assert said_attempts(caplog.text, "g00/evaluate") == [1]
    assert mlflow_attempts(tmp_path, "run-cut", "g00/evaluate") == [("1", "FINISHED")]


def test_a_stage_finished_by_an_earlier_driver_and_met_as_cached_is_not_counted_again(tmp_path, caplog):
    cut_off_during_train(tmp_path, "run-twice")
    assert drive(tmp_path, "run-twice", resume=True) is not None
    caplog.set_level(logging.INFO, logger="orchestrator")
    again = drive(tmp_path, "run-twice", resume=True)  # every stage a cache hit
    assert again is not None and again.names(StageState.CACHED) == ["data", "g00/train", "g00/evaluate"]
    assert said_attempts(caplog.text, "data") == []
    assert ledger_attempts(tmp_path, "run-twice") == {"data": 1, "g00/train": 2, "g00/evaluate": 1}
    assert mlflow_attempts(tmp_path, "run-twice", "data") == [("1", "FINISHED")]
    caplog.clear()
    SUBMITTED.clear()
    drive(tmp_path, "run-twice", resume=True, rerun={"g00/evaluate"})  # computed again: its second attempt
    assert said_attempts(caplog.text, "g00/evaluate") == [2], caplog.text
    assert SUBMITTED == [("g00/evaluate", 2)]
    assert ledger_attempts(tmp_path, "run-twice") == {"data": 1, "g00/train": 2, "g00/evaluate": 2}
    assert mlflow_attempts(tmp_path, "run-twice", "g00/evaluate") == [("1", "FINISHED"), ("2", "FINISHED")]


def test_a_cache_hit_from_another_run_is_no_attempt(tmp_path, caplog):
    assert drive(tmp_path, "run-first", resume=False) is not None
    assert drive(tmp_path, "run-reuses", resume=False) is not None  # every stage the first run's
    assert ledger_attempts(tmp_path, "run-reuses") == {"data": 0, "g00/train": 0, "g00/evaluate": 0}
    assert mlflow_attempts(tmp_path, "run-reuses", "g00/evaluate") == [("0", "FINISHED")]
    caplog.set_level(logging.INFO, logger="orchestrator")
    drive(tmp_path, "run-reuses", resume=True, rerun={"g00/evaluate"})  # the run's own first attempt at it
    assert said_attempts(caplog.text, "g00/evaluate") == [1], caplog.text
    assert ledger_attempts(tmp_path, "run-reuses")["g00/evaluate"] == 1
    assert mlflow_attempts(tmp_path, "run-reuses", "g00/evaluate") == [("0", "FINISHED"), ("1", "FINISHED")]


def test_retries_in_a_resumed_driver_count_on_and_the_stage_gets_its_retries_again(tmp_path, caplog):
    """A stage that used its one retry and failed is resumed: attempts 3 and 4, the retry still allowed in
    this driver; each driver's MLflow run of the stage ends tagged with its last attempt, as the console says."""
    (tmp_path / "fail").write_text("2")
    assert drive(tmp_path, "run-retried", resume=False, retries=1) is None
    assert ledger_attempts(tmp_path, "run-retried")["g00/train"] == 2
    (tmp_path / "fail").write_text("1")
    caplog.set_level(logging.INFO, logger="orchestrator")
    summary = drive(tmp_path, "run-retried", resume=True, retries=1)
    assert summary is not None and summary.status is RunStatus.FINISHED
    assert said_attempts(caplog.text, "g00/train") == [3, 4], caplog.text
    assert "stage g00/train attempt 3 failed (RuntimeError: the node went away); retrying (1 of 1 retries used)" in (
        caplog.text
    )
    assert ledger_attempts(tmp_path, "run-retried")["g00/train"] == 4
    assert mlflow_attempts(tmp_path, "run-retried", "g00/train") == [("2", "FAILED"), ("4", "FINISHED")]
