"""The pipeline run's MLflow record says how it was started: `relay.overrides`, and a config.yaml that reruns anywhere.

Before the fix: the overrides were only in the run record's command.json, and the config.yaml on the MLflow run held the
resolved stores (artifact_uri, tracking uri of /home/me/ws), so `relay run` of the downloaded file ran into
the original workspace (all cache hits, models registered in the old registry) whatever RELAY_WORKSPACE said.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from orchestrator.cli import main
from orchestrator.config import RunSettings, TrackingSettings, artifact_uri, tracking_uri
from orchestrator.engine.ledger import record_path
from orchestrator.tracking import run_command

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")
QUICK = ["run.executor=local", "train.steps=3", "crest.generations=1", "tracking.system_metrics=false"]


@pytest.fixture
def shell_stores(monkeypatch: pytest.MonkeyPatch):
    """Where the shell's RELAY_WORKSPACE points, set per call; the other store variables unset."""
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    return lambda workspace: monkeypatch.setenv("RELAY_WORKSPACE", str(workspace))


def pipeline_run(workspace: Path, run_id: str):
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("relay").experiment_id],
        f"tags.`relay.pipeline_run` = '{run_id}' and tags.`relay.kind` = 'pipeline'",
    )
    return client, run


def test_the_pipeline_run_tags_its_command_line_overrides(tmp_path: Path, shell_stores) -> None:
    shell_stores(tmp_path / "ws")
    assert main(["run", SMOKE, *QUICK, "tracking.experiment=relay", "--run-id", "tagged"]) == 0
    _, run = pipeline_run(tmp_path / "ws", "tagged")
    assert run.data.tags["relay.overrides"] == " ".join([*QUICK, "tracking.experiment=relay"])
    assert shlex.split(run.data.tags["relay.overrides"]) == [*QUICK, "tracking.experiment=relay"]


def test_the_mlflow_config_reruns_in_the_workspace_of_whoever_runs_it(tmp_path: Path, shell_stores) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    shell_stores(first)
    assert main(["run", SMOKE, *QUICK, "tracking.experiment=relay", "--run-id", "orig"]) == 0
    client, run = pipeline_run(first, "orig")
    downloaded = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "down")))
    text = downloaded.read_text()
    assert text.splitlines()[0].startswith(
        "# config of Relay run orig; `relay run config.yaml` reruns it in the workspace"
    )
    config = yaml.safe_load(text)
    assert (config["run"]["workspace"], config["run"]["artifact_uri"], config["tracking"]["uri"]) == (None, None, None)
    assert str(first) not in text
    recorded = (first / "artifacts" / record_path("orig", "config.yaml")).read_text()
    assert f"artifact_uri: {first / 'artifacts'}" in recorded  # what `relay resume` reads keeps its stores

    shell_stores(second)  # someone else reruns the downloaded file
    assert main(["run", str(downloaded), "--run-id", "rerun"]) == 0
    assert (second / "artifacts" / "runs" / "rerun").is_dir() and not (first / "artifacts" / "runs" / "rerun").exists()
    _, rerun = pipeline_run(second, "rerun")
    assert rerun.data.tags["relay.overrides"] == ""  # the file ran as it was: nothing changed on the command line


def test_locations_the_user_wrote_are_kept_as_written(tmp_path: Path) -> None:
    """A team's tracking server or bucket is what the user meant wherever the file is rerun; a workspace given
    relative stays relative."""
    path = tmp_path / "mine.yaml"
    path.write_text("pipeline: crest\nrun:\n  workspace: ./ws\ntracking:\n  experiment: e\n")
    command = run_command.RunCommand(str(path), ("tracking.uri=http://mlflow.team:5000",))
    written = run_command.written_locations(command)
    resolved = {
        "pipeline": "crest",
        "run": {"workspace": "./ws", "artifact_uri": str(tmp_path / "ws" / "artifacts"), "num_cpus": 2},
        "tracking": {"uri": "http://mlflow.team:5000", "experiment": "e"},
    }
    text = run_command.rerunnable_yaml(resolved, written, "r1")
    assert text.splitlines()[0] == (
        "# config of Relay run r1; `relay run config.yaml` reruns it with its stores as written "
        "(run.workspace, tracking.uri)"
    )
    assert yaml.safe_load(text) == {
        "pipeline": "crest",
        "run": {"workspace": "./ws", "artifact_uri": None, "num_cpus": 2},
        "tracking": {"uri": "http://mlflow.team:5000", "experiment": "e"},
    }
    assert resolved["run"]["artifact_uri"] == str(tmp_path / "ws" / "artifacts")  # the caller's config untouched
    unknown = run_command.rerunnable_config(
        resolved, run_command.written_locations(run_command.RunCommand("gone.yaml", ()))
    )
    assert (unknown["run"]["workspace"], unknown["tracking"]["uri"]) == (None, None)  # file gone: nothing machine's


def test_a_null_location_resolves_where_the_rerunner_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "theirs"))
    monkeypatch.delenv("RELAY_ARTIFACT_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = run_command.rerunnable_config(
        {"run": {"artifact_uri": "/old/artifacts"}, "tracking": {"uri": "sqlite:////old/mlflow.db"}}, None
    )
    run, tracking = RunSettings.model_validate(config["run"]), TrackingSettings.model_validate(config["tracking"])
    assert artifact_uri(run) == str(tmp_path / "theirs" / "artifacts")
    assert tracking_uri(run, tracking) == f"sqlite:///{tmp_path / 'theirs' / 'mlflow.db'}"


def test_the_overrides_tag_is_shell_quoted_and_cut_at_a_whole_override() -> None:
    overrides = ["train.steps=60", "tracking.experiment=my runs", "data.classes=[0, 1]"]
    tag = run_command.overrides_tag(overrides, "r1")
    assert tag == "train.steps=60 'tracking.experiment=my runs' 'data.classes=[0, 1]'"
    assert shlex.split(tag) == overrides
    many = [f"train.note{i}={'x' * 90}" for i in range(200)]  # about 20,000 characters
    cut = run_command.overrides_tag(many, "r1")
    assert len(cut) <= run_command.MAX_TAG_CHARS
    kept, note = cut.split(" ... ")
    assert shlex.split(kept) == many[: len(shlex.split(kept))]
    assert note == f"({len(many) - len(shlex.split(kept))} more: runs/r1/command.json)"
    assert run_command.overrides_tag(["x=" + "y" * 9000], "r1") == "... (1 more: runs/r1/command.json)"


def test_a_sweep_trial_config_keeps_its_locations_as_written_and_a_run_without_a_record_drops_them(tmp_path: Path):
    """A trial's config is built from the sweep's file as written (never resolved) and has no run record."""
    from orchestrator.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {"run": {"workspace": "./team-ws", "artifact_uri": None}, "tracking": {"uri": None, "experiment": "t"}}
    client = MlflowClient(uri)
    sweep = client.create_run(client.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())).info.run_id
    written = {}
    for run_id, parent in (("trial-1", sweep), ("plain", None)):
        tracker = MlflowTracker(uri, "t", parent_run_id=parent)
        tracker.start_pipeline(run_id, "toy", config, resume=False)
        tracker.end_pipeline("FINISHED")
        path = client.download_artifacts(tracker.parent_run_id, "config.yaml", str(tmp_path / run_id))
        written[run_id] = yaml.safe_load(Path(path).read_text())["run"]["workspace"]
        assert "relay.overrides" not in client.get_run(tracker.parent_run_id).data.tags  # no record, no command
    assert written == {"trial-1": "./team-ws", "plain": None}
