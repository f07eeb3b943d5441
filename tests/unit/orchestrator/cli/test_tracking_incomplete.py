"""A run whose tracking store stopped answering says its MLflow record is incomplete, and how to fill it in.

Before the fix, with the MLflow server killed during g00/train, the run ended with "Browse the generations in MLflow"
pointing at a record whose parent had no metrics and stayed RUNNING, and `relay generations RUN` printed an empty table
with nothing to say why. `relay resume RUN` filled it in, but nothing said so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from orchestrator.cli import main
from orchestrator.engine.ledger import record_path
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.unit.orchestrator.tracking.test_store_lost import REFUSED

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def dies_at_g00_train(real):
    """``MlflowTracker._log_outcome`` as it goes when the server is killed while g00/train runs."""

    def log_outcome(self, run, record):
        if record.stage == "g00/train":
            raise MlflowException(REFUSED)
        return real(self, run, record)

    return log_outcome


def test_a_run_that_lost_its_store_says_so_and_resume_fills_the_record_in(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, no_store_settings
) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    with monkeypatch.context() as patched:
        patched.setattr(MlflowTracker, "_log_outcome", dies_at_g00_train(MlflowTracker._log_outcome))
        assert main([*argv, "--run-id", "lost"]) == 0
    out = capsys.readouterr().out
    assert "The MLflow record of run lost is incomplete: the tracking store sqlite:///" in out
    assert "stopped answering at g00/train" in out
    assert f"relay resume lost --artifact-uri {workspace / 'artifacts'}" in out
    assert "Browse the generations" not in out, "the browse line would open a record that stops at g00/train"
    record = json.loads((workspace / "artifacts" / record_path("lost", "tracking.json")).read_bytes())
    assert record["complete"] is False and record["stopped_answering_at"] == "g00/train"

    assert main(["generations", "lost", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "Run lost's MLflow record is incomplete: the tracking store stopped answering at g00/train" in out
    assert "relay resume lost" in out

    assert main(["resume", "lost", "--workspace", str(workspace)]) == 0  # the store answers again
    out = capsys.readouterr().out
    assert "Browse the generations" in out and "incomplete" not in out
    assert json.loads((workspace / "artifacts" / record_path("lost", "tracking.json")).read_bytes())["complete"]
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("relay").experiment_id], "tags.`relay.pipeline_run` = 'lost'"
    )
    assert {r.info.run_name: r.info.status for r in runs if r.info.run_name in ("lost", "gen-00 of lost")} == {
        "lost": "FINISHED",
        "gen-00 of lost": "FINISHED",
    }
    assert main(["generations", "lost", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "incomplete" not in out
    assert next(line for line in out.splitlines() if line.startswith("0 ")).split()[1] != "-"


def test_a_run_that_kept_its_store_writes_no_tracking_record(tmp_path: Path, capsys, no_store_settings) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "--run-id", "kept"]) == 0
    assert "Browse the generations" in capsys.readouterr().out
    assert not (workspace / "artifacts" / record_path("kept", "tracking.json")).exists()
