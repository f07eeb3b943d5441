"""A run that joined a Ray cluster named by the command keeps its address, and `relay resume` goes back there.

Before, the record held no address and `relay resume RUN` finished such a run on a new local Ray
instance without a word. The records here are written by ``save_run_record`` into a real store;
the cluster that no longer answers is a bound port nobody listens on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.run.cluster_join import address_to_record
from orchestrator.cli.run.run_locations import RAY_JOB_ENV
from orchestrator.cli.run.run_record import recorded_ray_address, save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.registry import PipelineSpec


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE", "RAY_ADDRESS", RAY_JOB_ENV):
        monkeypatch.delenv(name, raising=False)


def test_the_cluster_a_command_named_is_recorded_and_one_the_config_names_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert address_to_record("10.0.0.5:6379", RunSettings()) == "10.0.0.5:6379"
    assert address_to_record(None, RunSettings(ray_address="10.0.0.5:6379")) is None  # in the config already
    assert address_to_record("local", RunSettings()) is None
    assert address_to_record("10.0.0.5:6379", RunSettings(executor="local")) is None
    assert address_to_record(None, RunSettings()) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.6:6379")
    assert address_to_record(None, RunSettings()) == "10.0.0.6:6379"
    monkeypatch.setenv(RAY_JOB_ENV, "{}")  # inside a Ray job: `relay submit --resume` finishes it there
    assert address_to_record(None, RunSettings()) is None


def test_resume_of_a_run_whose_cluster_is_gone_names_it_and_writes_nothing(tmp_path: Path, gone: str, capsys) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path)))
    save_run_record(store, "r1", config, "toy.yaml", [], ray_address=gone)
    assert recorded_ray_address(store, "r1") == gone
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))

    assert main(["resume", "r1", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert f"run r1 ran on the Ray cluster at {gone}" in err
    assert "--address local" in err and "--address HOST:PORT" in err
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before  # no mlflow.db either


def test_a_record_without_an_address_reads_as_none(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path)))
    save_run_record(store, "r1", config, "toy.yaml", [])
    assert "ray_address" not in json.loads((tmp_path / "artifacts/runs/r1/command.json").read_text())
    assert recorded_ray_address(store, "r1") is None
