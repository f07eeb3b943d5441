"""A file `init.source` is made absolute when the config is read, as data.root, data.uri and run.workspace are: the run
records the file it started from, and `relay resume --artifact-uri` from another folder finds it. Given as typed,
`init.source=mine.pt` was recorded as `mine.pt`, and the resume said "the data changed since run ... started, or is
gone: no weights file at /OTHER/mine.pt". Registry models, run stages and URIs with a scheme are names, kept as given.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.cli import main
from orchestrator.engine.ledger import CONFIG_FILE, LEDGER_FILE, record_path
from pipelines.builders import crest
from pipelines.models import create_model
from tests.unit.pipelines.helpers import config

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")


def init_source(value: str) -> str:
    return config(crest.CrestConfig, **{"init.source": value}).init.source


def test_a_relative_or_home_file_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert init_source("mine.pt") == str(tmp_path / "mine.pt")
    assert init_source("weights/../mine.pt") == str(tmp_path / "mine.pt")
    assert init_source("~/mine.pt") == os.path.expanduser("~/mine.pt")
    assert init_source("/elsewhere/mine.pt") == "/elsewhere/mine.pt"


@pytest.mark.parametrize("name", ["models:/crest@gen-01", "models:/crest/3", "run:crest-1/g00/train", "s3://b/w.pt"])
def test_names_that_are_no_local_file_are_kept_as_given(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert init_source(name) == name


def test_a_run_started_from_a_relative_file_resumes_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):  # the test names the stores
        monkeypatch.delenv(name, raising=False)
    started_in, elsewhere, workspace = tmp_path / "qa", tmp_path / "other", tmp_path / "ws"
    started_in.mkdir()
    elsewhere.mkdir()
    torch.save(create_model("small_cnn", 10, 1).state_dict(), started_in / "mine.pt")
    monkeypatch.chdir(started_in)
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "init.source=mine.pt", "--run-id", "r1", "--stop-after", "init/import"]) == 0
    store = workspace / "artifacts"

    monkeypatch.chdir(elsewhere)
    assert main(["resume", "r1", "--artifact-uri", str(store), "--stop-after", "g00/train"]) == 0
    recorded = yaml.safe_load((store / record_path("r1", CONFIG_FILE)).read_text())
    assert recorded["init"]["source"] == str(started_in / "mine.pt")
    ledger = yaml.safe_load((store / record_path("r1", LEDGER_FILE)).read_text())
    assert ledger["stages"]["g00/train"]["state"] == "succeeded"
    assert not any(elsewhere.iterdir()), "the resume wrote into the workspace it was given, not the cwd"
