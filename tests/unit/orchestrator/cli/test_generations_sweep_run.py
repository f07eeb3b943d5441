"""`relay generations SWEEP_MLFLOW_ID`: a sweep's own MLflow run is recognised, and its trials are named.

Before the fix, a user passed the MLflow run id of a `relay tune` sweep (its parent run, where the trials nest) and got
"this looks like an MLflow run id, which the tracking store here does not know", from a store that
knows it. A sweep's run holds the search, not generations; each trial has the table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.records import StageRecord
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.sweeps import SweepTracker
from tests.unit.orchestrator.cli.test_generations import TOY


def sweep_with_trials(workspace: Path, trials: list[str], best: str | None) -> str:
    """A sweep's MLflow run with ``trials`` nested under it, as `relay tune` leaves them; its MLflow id."""
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    sweep = SweepTracker(uri)
    sweep_id = sweep.start("toy-sweep", "toy", {"tune.metric": "evaluate/accuracy"}, "tune: {}\n")
    assert sweep_id is not None
    for trial in trials:
        tracker = MlflowTracker(uri, parent_run_id=sweep_id, register_models=False)
        tracker.start_pipeline(trial, "toy", {"pipeline": "toy", "name": "toy"}, resume=False)
        tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", {"accuracy": 0.5}))
        tracker.end_pipeline("FINISHED")
    sweep.finish("FINISHED", {"relay.best_run": best} if best else {}, {}, [])
    return sweep_id


def test_a_sweeps_mlflow_run_id_names_the_sweep_and_its_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    sweep_id = sweep_with_trials(tmp_path, ["toy-sweep-a_00000", "toy-sweep-a_00001"], best="toy-sweep-a_00001")
    assert main(["generations", sweep_id, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert f"{sweep_id} is the MLflow run of sweep 'toy-sweep' (relay tune)" in err
    assert "toy-sweep-a_00000, toy-sweep-a_00001" in err
    assert f"its best trial: relay generations toy-sweep-a_00001 --workspace {tmp_path}" in err
    assert "does not know" not in err

    assert main(["generations", "toy-sweep-a_00001", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    assert "Run toy-sweep-a_00001:" in capsys.readouterr().out  # the command it shows works


def test_a_sweep_without_tracked_trials_says_so(tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings):
    sweep_id = sweep_with_trials(tmp_path, [], best=None)
    assert main(["generations", sweep_id, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert "MLflow run of sweep 'toy-sweep'" in err and "no trial of it is tracked yet" in err
