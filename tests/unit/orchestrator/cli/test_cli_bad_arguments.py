"""Bad input outside the config file exits 2 with one line that says what to do; a cluster's failure stays 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.tracking.mlflow_tracker import MlflowTracker

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def test_generations_in_an_empty_folder_says_there_are_no_runs(tmp_path: Path, capsys) -> None:
    assert main(["generations", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no runs yet: there is no tracking database at {tmp_path / 'mlflow.db'}" in err
    assert "relay run pipelines/configs/smoke.yaml" in err and list(tmp_path.iterdir()) == []


def test_generations_of_an_unknown_run_points_at_the_workspaces_runs(tmp_path: Path, capsys) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline("run-known", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    assert main(["generations", "bogus", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    store = tmp_path / "artifacts"  # run records live beside the outputs
    assert (
        f"no run 'bogus' in the artifact store {store}; list its runs with `relay runs --artifact-uri {store}`" in err
    )
    assert "relay status" not in err


def test_generations_of_an_unknown_run_in_an_empty_workspace_writes_nothing(tmp_path: Path, capsys) -> None:
    """Asking MLflow for the run's pipeline made it create ws/mlflow.db (950 kB) before the exit 2."""
    workspace = tmp_path / "ws"
    assert main(["generations", "bogus", "--workspace", str(workspace)]) == 2
    assert "no run 'bogus' in the artifact store" in capsys.readouterr().err
    assert not workspace.exists()


def test_resume_of_an_unknown_run_points_at_the_workspaces_runs(tmp_path: Path, capsys) -> None:
    assert main(["resume", "bogus", "--workspace", str(tmp_path)]) == 2
    assert f"list its runs with `relay runs --artifact-uri {tmp_path / 'artifacts'}`" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["status", "job-1"], ["stop", "job-1"], ["logs", "job-1"], ["jobs"]])
def test_cluster_commands_without_an_address_exit_2(command: list[str], capsys, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(command) == 2
    assert "no Ray cluster address: pass --address http://HOST:8265" in capsys.readouterr().err


def test_submit_without_an_address_exits_2_before_reading_the_data(capsys, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["submit", str(SMOKE)]) == 2
    assert "no Ray cluster address" in capsys.readouterr().err


def test_a_ray_client_address_is_bad_input(capsys) -> None:
    assert main(["status", "job-1", "--address", "ray://head:10001"]) == 2
    assert "is a Ray client/GCS address" in capsys.readouterr().err


def test_an_address_where_nothing_answers_is_bad_input(capsys) -> None:
    assert main(["status", "job-1", "--address", "http://127.0.0.1:9"]) == 2
    assert "no Ray Jobs server at http://127.0.0.1:9" in capsys.readouterr().err


def test_submit_refuses_an_unknown_rerun_stage_before_any_check_that_reaches_out(capsys, tmp_path) -> None:
    code = main(["submit", str(SMOKE), "--rerun-from", "g99/train", "--address", "http://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err
    assert "g99/train" in err and "g00/train" in err, err  # names the stage and the valid ones
