"""`relay runs` and `relay generations` on a run whose MLflow record is incomplete (its tracking store failed).

Before the fix: `relay runs` listed such a run FINISHED like any other, though `relay run` had said its MLflow record
was incomplete; and `relay generations` without a run id, the newest run's tracking store having failed at its start,
showed the run before it, without a word. Real runs here: the smoke pipeline on a real MLflow store whose experiment is
deleted for the second run (MLflow refuses to start a run in it) and restored after.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def smoke_run(workspace: Path, run_id: str) -> None:
    argv = ["run", SMOKE, "run.executor=local", "train.steps=10", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "--run-id", run_id]) == 0


@pytest.fixture
def second_run_untracked(tmp_path: Path, no_store_settings) -> Path:
    """A workspace with run `tracked`, then run `untracked` whose store failed at its start; the store works again."""
    workspace = tmp_path / "ws"
    smoke_run(workspace, "tracked")
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay").experiment_id
    client.delete_experiment(experiment)
    smoke_run(workspace, "untracked")
    client.restore_experiment(experiment)
    return workspace


def test_runs_marks_a_run_whose_mlflow_record_is_incomplete_and_says_how_to_fill_it_in(
    second_run_untracked: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = second_run_untracked
    capsys.readouterr()
    assert main(["runs", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["tracked"], ["untracked"])
    }
    assert rows["untracked"][2] == "FINISHED*" and rows["tracked"][2] == "FINISHED"
    assert out.splitlines()[0].split() == ["run", "pipeline", "status", "generations", "best", "started"]
    (line,) = [line for line in out.splitlines() if line.startswith("* ")]
    assert "incomplete MLflow record" in line and ": untracked;" in line and "tracked," not in line
    assert f"`relay resume untracked --artifact-uri {workspace / 'artifacts'}` fills it in" in line

    assert main(["runs", "--workspace", str(workspace), "--status", "finished"]) == 0  # the mark is no status
    assert "untracked" in capsys.readouterr().out


def test_generations_without_a_run_id_says_the_newest_run_has_no_mlflow_run(
    second_run_untracked: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = second_run_untracked
    capsys.readouterr()
    assert main(["generations", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "Run tracked:" in out  # the newest run MLflow has
    assert "The newest run `relay runs` lists, untracked (FINISHED), is not the one shown" in out
    assert "failed at the run's start, so it has no MLflow run" in out
    assert f"`relay resume untracked --artifact-uri {workspace / 'artifacts'}` fills its record in" in out


def test_runs_of_complete_records_have_neither_mark_nor_line(tmp_path: Path, no_store_settings, capsys) -> None:
    workspace = tmp_path / "ws"
    smoke_run(workspace, "tracked")
    capsys.readouterr()
    assert main(["runs", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "FINISHED*" not in out and "incomplete" not in out
    assert main(["generations", "--workspace", str(workspace)]) == 0
    assert "is not the one shown" not in capsys.readouterr().out
