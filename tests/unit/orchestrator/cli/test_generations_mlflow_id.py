"""`relay generations MLFLOW_RUN_ID`: the id `relay run` prints for the MLflow UI (`open run d461...`) names its run."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.tracking.common import mlflow_client
from tests.unit.orchestrator.cli.test_generations import TOY, tracked


def mlflow_run_id(workspace: Path, kind: str) -> str:
    """The MLflow id of the workspace's run tagged `relay.kind` KIND (pipeline, generation, stage)."""
    client = mlflow_client(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay").experiment_id
    [run] = client.search_runs([experiment], f"tags.`relay.kind` = '{kind}'")
    return run.info.run_id


@pytest.mark.parametrize("kind", ["pipeline", "stage"])
def test_an_mlflow_run_id_shows_the_relay_run_it_belongs_to(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, kind: str
) -> None:
    """It said `no run 'd461...' in the artifact store`: the MLflow run's `relay.pipeline_run` tag names the run."""
    tracked(tmp_path, "toy-20261205-070000-ab12", {"pipeline": "toy", "name": "toy"})
    mlflow_id = mlflow_run_id(tmp_path, kind)
    assert main(["generations", mlflow_id, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert "Run toy-20261205-070000-ab12:" in output and "0.7500" in output


def test_an_mlflow_run_id_the_store_does_not_know_says_to_pass_the_relay_run_id(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    tracked(tmp_path, "run-known", {"pipeline": "toy", "name": "toy"})
    unknown = "0" * 32
    assert main(["generations", unknown, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert f"no run {unknown!r} in the artifact store" in err
    assert "looks like an MLflow run id, which the tracking store here does not know: pass the Relay run id" in err
    empty = tmp_path / "empty"
    assert main(["generations", unknown, "--workspace", str(empty)], pipelines={"toy": TOY}) == 2
    assert not empty.exists()  # asking MLflow about the id made no tracking database
