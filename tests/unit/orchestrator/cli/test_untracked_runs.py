"""`relay generations` and `relay ui` in a workspace whose runs stopped before MLflow recorded anything.

A run interrupted while Ray started has its run record (config, command) but no tracking database
yet. The readers said "no runs yet" and advised a new `relay run`, while `relay runs` listed the
run and `relay resume` finishes it. Records are written by the CLI's own writer into a real
artifact store; the driver is a real process that has ended.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.run.run_record import save_run_record, with_locations
from orchestrator.config import PipelineConfig, RunSettings, artifact_uri, tracking_uri
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.registry import PipelineSpec


class ToyConfig(PipelineConfig):
    """A run record needs only the pipeline and where it tracks."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}


@pytest.fixture(autouse=True)
def no_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


def started_run(workspace: Path, run_id: str, driver_alive: bool) -> None:
    """The record `relay run` writes before it starts Ray, with the stores resolved as it resolves them."""
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(workspace)))
    located = with_locations(config, artifact_uri(config.run), tracking_uri(config.run, config.tracking))
    store = ArtifactStore(artifact_uri(config.run))
    save_run_record(store, run_id, located, "toy.yaml", [])  # the driver: this process
    if not driver_alive:
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        command = workspace / "artifacts" / "runs" / run_id / "command.json"
        data = json.loads(command.read_text())
        data["driver"]["pid"] = int(ended.stdout)
        command.write_text(json.dumps(data))


@pytest.mark.parametrize("command", [["generations"], ["generations", "toy-1"], ["ui"]])
def test_a_run_interrupted_before_mlflow_is_named_with_its_resume(tmp_path: Path, capsys, command) -> None:
    started_run(tmp_path, "toy-1", driver_alive=False)
    assert main([*command, "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert "run toy-1 (INTERRUPTED) has no MLflow records yet" in err
    assert "relay resume toy-1" in err and "relay run pipelines" not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_run_still_starting_is_named_without_a_resume(tmp_path: Path, capsys) -> None:
    started_run(tmp_path, "toy-1", driver_alive=True)
    assert main(["generations", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert "run toy-1 (STARTING) has no MLflow records yet" in err and "look again once its stages run" in err
    assert "relay resume" not in err


def test_a_workspace_without_runs_still_says_to_make_one(tmp_path: Path, capsys) -> None:
    assert main(["generations", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    assert "no runs yet" in capsys.readouterr().err


def test_a_finished_run_whose_database_is_gone_is_not_sent_to_resume(tmp_path: Path, capsys) -> None:
    from orchestrator.engine.ledger import Ledger

    started_run(tmp_path, "toy-1", driver_alive=True)
    Ledger(ArtifactStore(str(tmp_path / "artifacts")), "toy", "toy-1", "v1", 0, None).write("FINISHED", {})
    assert main(["generations", "toy-1", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert "run toy-1 finished, but its tracking database" in err and "(moved or deleted?)" in err
    assert "relay resume" not in err
