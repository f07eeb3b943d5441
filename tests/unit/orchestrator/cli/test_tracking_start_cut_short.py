"""A run whose tracking start failed after its MLflow run was made is listed incomplete, and `relay resume` fills it in.

Before the fix, QA's run warned `MLflow start_pipeline failed against ...` once its pipeline run was made: that
run had no params and no config.yaml, yet `relay runs` listed the run FINISHED without the incomplete mark,
`relay run` ended with the browse line and `relay generations` said nothing; and from a machine that sees only
the tracking store, `relay generations RUN` said the run was not in the artifact store, as its pipeline was read
from the missing params alone. The store fails for real here: its experiment keeps its artifacts under a path
that is a file, so MLflow makes the run and cannot log its config.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def store_that_cannot_log_files(workspace: Path) -> tuple[MlflowClient, Path]:
    """The workspace's real MLflow store whose `relay` experiment keeps its artifacts below a file."""
    workspace.mkdir(parents=True)
    blocker = workspace / "blocker"
    blocker.write_text("a file where MLflow expects a folder")
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    client.create_experiment("relay", artifact_location=(blocker / "run-files").as_uri())
    return client, blocker


def pipeline_run(client: MlflowClient, run_id: str):
    experiment = client.get_experiment_by_name("relay").experiment_id
    (run,) = client.search_runs(
        [experiment], f"tags.`relay.pipeline_run` = '{run_id}' and tags.`relay.kind` = 'pipeline'"
    )
    return run


def test_a_run_whose_tracking_start_was_cut_short_is_marked_and_resume_fills_it_in(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, no_store_settings
) -> None:
    workspace = tmp_path / "ws"
    client, blocker = store_that_cannot_log_files(workspace)
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "--run-id", "cut"]) == 0
    out = capsys.readouterr().out
    assert "The MLflow record of run cut is incomplete" in out and "part-way through its start" in out, out
    assert f"relay resume cut --artifact-uri {workspace / 'artifacts'}" in out
    assert "Browse the generations" not in out
    assert not pipeline_run(client, "cut").data.params

    assert main(["runs", "--workspace", str(workspace)]) == 0
    (row,) = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("cut ")]
    assert row[2] == "FINISHED*"
    assert main(["generations", "cut", "--workspace", str(workspace)]) == 0
    assert "Run cut's MLflow record is incomplete" in capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")  # a machine that sees MLflow only
    assert main(["generations", "cut", "--workspace", str(tmp_path / "elsewhere")]) == 0, capsys.readouterr().err
    assert "Run cut" in capsys.readouterr().out
    monkeypatch.delenv("MLFLOW_TRACKING_URI")

    blocker.unlink()  # the store can log files again
    assert main(["resume", "cut", "--workspace", str(workspace)]) == 0
    assert "Browse the generations" in capsys.readouterr().out
    run = pipeline_run(client, "cut")
    assert len(run.data.params) > 100 and run.info.status == "FINISHED"
    assert "config.yaml" in [item.path for item in client.list_artifacts(run.info.run_id)]
    assert main(["runs", "--workspace", str(workspace)]) == 0
    assert "FINISHED*" not in capsys.readouterr().out
