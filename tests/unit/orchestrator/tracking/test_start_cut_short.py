"""A tracking start that fails part-way is marked incomplete; one from a deleted directory no longer fails.

Before the fix, QA's Ray job driver lost its current directory (Ray unpacked the job's working_dir again) and
warned `MLflow start_pipeline failed against ... ([Errno 2] No such file or directory)`: the pipeline run had been
made, but reading the command's relative config path failed, and the error's own message asked os.getcwd(), so
the run had no params and no config.yaml. Its record still said complete (`relay runs`: FINISHED, no mark), and the
warning named no path. Real MLflow sqlite stores and real files here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from orchestrator.config import dotted
from orchestrator.tracking.common import default_artifact_location, open_experiment
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.pipeline_run import START_CUT_SHORT

CONFIG = {
    "name": "smoke",
    "pipeline": "crest",
    "seed": 0,
    "train": {"steps": 3, "lr": 0.1},
    "tracking": {"experiment": "relay"},
}
JOB_FILE = "run:\n  artifact_uri: s3://bucket/relay\n"  # the config file as the user wrote it


def run_config(store: Path, uri: str) -> dict:
    """The resolved config the tracker is given: the stores written in (cli: with_locations)."""
    return {**CONFIG, "run": {"artifact_uri": str(store), "workspace": None}, "tracking": {"uri": uri}}


def recorded_command(store: Path, run_id: str, config_path: str) -> None:
    """The run's command record, as `relay run` writes it before the tracker starts (a relative config path)."""
    folder = store / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "command.json").write_text(json.dumps({"config": config_path, "overrides": []}))


def pipeline_run(uri: str, run_id: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    (run,) = client.search_runs([experiment], f"tags.`relay.pipeline_run` = '{run_id}'")
    return client, run


def logged_config(client: MlflowClient, run, into: Path) -> dict:
    return yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml", str(into))).read_text())


@pytest.mark.parametrize("unpacked_again", [True, False], ids=["unpacked-again", "gone-for-good"])
def test_a_start_whose_directory_was_deleted_logs_its_config_and_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unpacked_again: bool
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_experiment(uri, "relay", default_artifact_location(uri))  # the store as MLflow holds it open
    store = tmp_path / "artifacts"
    recorded_command(store, "r1", "job.yaml")
    job = tmp_path / "working_dir"
    job.mkdir()
    (job / "job.yaml").write_text(JOB_FILE)
    monkeypatch.chdir(job)
    tracker = MlflowTracker(uri, "relay")  # built before Ray starts, as `relay run` builds it
    shutil.rmtree(job)  # the driver's directory, deleted under it
    if unpacked_again:
        job.mkdir()
        (job / "job.yaml").write_text(JOB_FILE)
    with pytest.raises(FileNotFoundError):
        os.getcwd()

    tracker.start_pipeline("r1", "smoke", run_config(store, uri), resume=False)

    assert tracker.lost_at is None
    client, run = pipeline_run(uri, "r1")
    assert len(run.data.params) == len(dotted(run_config(store, uri))) > 5
    written = logged_config(client, run, tmp_path)["run"]["artifact_uri"]
    assert written == ("s3://bucket/relay" if unpacked_again else None), "the store as written, or unknown"


def blocked_artifacts(tmp_path: Path, uri: str) -> Path:
    """Experiment `relay` whose artifact folder lies under a file: MLflow makes runs there, and cannot log files."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is expected")
    MlflowClient(uri).create_experiment("relay", artifact_location=(blocker / "mlartifacts").as_uri())
    return blocker


def test_a_start_cut_short_is_marked_names_its_step_and_resume_fills_it_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    blocker = blocked_artifacts(tmp_path, uri)
    store = tmp_path / "artifacts"
    recorded_command(store, "r2", str(tmp_path / "job.yaml"))
    (tmp_path / "job.yaml").write_text(JOB_FILE)
    tracker = MlflowTracker(uri, "relay")
    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking"):
        tracker.start_pipeline("r2", "smoke", run_config(store, uri), resume=False)

    assert tracker.lost_at is not None, "the run's record must say its MLflow record is incomplete"
    assert tracker.lost_at == START_CUT_SHORT
    client, run = pipeline_run(uri, "r2")
    assert not run.data.params and run.info.status == "FAILED", "left RUNNING for good, without a word"
    assert "tracking start failed part-way" in run.data.tags["mlflow.note.content"]
    (warning,) = [r.getMessage() for r in caplog.records if "start_pipeline failed" in r.getMessage()]
    assert f"logging config.yaml to MLflow run {run.info.run_id}" in warning
    tracker.stage_started("g00/train", 0)  # the store is called no more in this attempt
    assert len(client.search_runs([run.info.experiment_id])) == 1

    blocker.unlink()  # the store works again
    resumed = MlflowTracker(uri, "relay")
    resumed.start_pipeline("r2", "smoke", run_config(store, uri), resume=True)
    assert resumed.lost_at is None and resumed.parent_run_id == run.info.run_id
    client, run = pipeline_run(uri, "r2")
    assert len(run.data.params) == len(dotted(run_config(store, uri))) and run.info.status == "RUNNING"
    assert logged_config(client, run, tmp_path)["run"]["artifact_uri"] == "s3://bucket/relay"
