"""A run whose tracking store fails at its start says its MLflow record is incomplete, as one that lost it mid-run.

Before the fix: with `start_pipeline` failing (tracking.strict=false), the run ended exit 0 with "... and open run
RUN_ID" although there was no MLflow run; `relay generations RUN_ID` then said only "no pipeline run", and nothing said
that `relay resume RUN_ID` fills the record in (which it does). The store here fails for real: its experiment is
deleted, which MLflow refuses to start a run in, and restoring it lets the resume track the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.cli import main
from orchestrator.engine.ledger import record_path

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def deleted_experiment_store(workspace: Path) -> MlflowClient:
    """The workspace's real MLflow store with its `relay` experiment deleted: every new run in it is refused."""
    workspace.mkdir(parents=True)
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    client.delete_experiment(client.create_experiment("relay", (workspace / "mlartifacts").as_uri()))
    return client


def test_a_run_whose_store_failed_at_its_start_says_so_and_resume_fills_the_record_in(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    workspace = tmp_path / "ws"
    client = deleted_experiment_store(workspace)
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "--run-id", "unstarted"]) == 0
    out = capsys.readouterr().out
    assert "The MLflow record of run unstarted is incomplete" in out
    assert "failed at the run's start" in out
    assert f"relay resume unstarted --artifact-uri {workspace / 'artifacts'}" in out
    assert "Browse the generations" not in out and "open run" not in out, "there is no MLflow run to open"
    record = json.loads((workspace / "artifacts" / record_path("unstarted", "tracking.json")).read_bytes())
    assert record["complete"] is False and record["stopped_answering_at"] == "the run's start"

    assert main(["generations", "unstarted", "--workspace", str(workspace)]) == 2
    said = capsys.readouterr().err
    assert "run unstarted has no MLflow run" in said and "failed at the run's start" in said
    assert "relay resume unstarted" in said

    client.restore_experiment(client.get_experiment_by_name("relay").experiment_id)  # the store works again
    assert main(["resume", "unstarted", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "Browse the generations" in out and "incomplete" not in out
    assert json.loads((workspace / "artifacts" / record_path("unstarted", "tracking.json")).read_bytes())["complete"]
    assert main(["generations", "unstarted", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "incomplete" not in out
    assert next(line for line in out.splitlines() if line.startswith("0 ")).split()[1] != "-"
