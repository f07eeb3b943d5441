"""The pipeline run's MLflow record says how it was started: `relay.overrides`.

QA: the overrides were only in the run record's command.json; the MLflow pipeline run had no tag or artifact for them.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.cli import main
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
