"""The end-of-run hint: the `relay ui` command it prints must open the store and experiment the run was tracked in."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from orchestrator.cli.run.closing_lines import ui_command
from orchestrator.config import RunSettings, TrackingSettings, load_yaml, tracking_uri, validate_config
from pipelines.builders import crest

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def smoke_config(workspace: Path, **tracking) -> crest.CrestConfig:
    data = load_yaml(SMOKE)
    data["run"] = {**data.get("run", {}), "workspace": str(workspace)}
    data["tracking"] = {**data.get("tracking", {}), **tracking}
    return validate_config(crest.CrestConfig, data)


def store_the_ui_opens(command: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(tracking URI, experiment) that `relay ui` resolves for ``command``, as cli/workspace.cmd_ui does."""
    words = shlex.split(command)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        monkeypatch.setenv(name, value)
    assert words[:2] == ["relay", "ui"]
    options = dict(zip(words[2::2], words[3::2], strict=True))
    uri = tracking_uri(RunSettings(workspace=options.get("--workspace")), TrackingSettings())
    return uri, options.get("--experiment", "relay")


def test_the_workspace_store_is_opened_by_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = smoke_config(tmp_path / "ws")
    uri = tracking_uri(config.run, config.tracking)
    command = ui_command(config, uri, tmp_path / "ws")
    assert command.startswith("relay ui --workspace")
    assert store_the_ui_opens(command, monkeypatch) == (uri, "relay")


def test_a_store_the_config_names_is_opened_through_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`relay ui --workspace WS` serves WS/mlflow.db only: it used to be printed for a run tracked elsewhere."""
    config = smoke_config(tmp_path / "ws", uri=f"sqlite:///{tmp_path / 'other dir' / 'other.db'}", experiment="my exp")
    uri = tracking_uri(config.run, config.tracking)
    command = ui_command(config, uri, tmp_path / "ws")
    assert store_the_ui_opens(command, monkeypatch) == (uri, "my exp")


def test_printed_commands_name_a_store_the_default_would_not_open(tmp_path: Path, monkeypatch) -> None:
    """`relay resume RUN` / `relay generations RUN` printed after a run on `run.artifact_uri` found no run."""
    from orchestrator.cli.common import store_of, store_option

    monkeypatch.delenv("RELAY_ARTIFACT_URI", raising=False)
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    default = str(tmp_path / "ws" / "artifacts")
    assert store_option(default) == ""
    elsewhere = tmp_path / "my store"
    elsewhere.mkdir()
    option = store_option(str(elsewhere))
    assert shlex.split(option) == ["--artifact-uri", str(elsewhere)]
    import argparse

    assert store_of(argparse.Namespace(artifact_uri=shlex.split(option)[1], workspace=None)).uri == str(elsewhere)
