"""`relay resume` keeps what `--no-cache` / `--rerun-from` asked for: stages not reached yet are computed afresh."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.cli.common import rerun_on_resume
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import COMMAND_FILE, LEDGER_FILE, record_path

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def store_with(tmp_path: Path, command: object, stages: dict[str, str]) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    store.write_record(record_path("r1", COMMAND_FILE), json.dumps(command).encode())
    ledger = {"status": "INTERRUPTED", "stages": {name: {"state": state} for name, state in stages.items()}}
    store.write_record(record_path("r1", LEDGER_FILE), json.dumps(ledger).encode())
    return store


def test_the_stages_asked_afresh_and_not_yet_done_are_rerun(tmp_path: Path) -> None:
    command = {"config": "c.yaml", "overrides": [], "rerun": ["data/split", "g00/train", "g00/evaluate", "g01/train"]}
    stages = {"data/split": "cached", "g00/train": "succeeded", "g00/evaluate": "pending", "g01/train": "failed"}
    assert rerun_on_resume(store_with(tmp_path, command, stages), "r1") == {"g00/evaluate", "g01/train"}


def test_a_plain_run_or_an_old_or_damaged_record_asks_for_nothing_afresh(tmp_path: Path) -> None:
    assert rerun_on_resume(store_with(tmp_path / "a", {"config": "c.yaml", "overrides": []}, {}), "r1") == set()
    assert rerun_on_resume(store_with(tmp_path / "b", ["not", "an", "object"], {}), "r1") == set()
    assert rerun_on_resume(ArtifactStore(str(tmp_path / "empty")), "r1") == set()


def test_a_resume_stopping_after_a_stage_the_run_has_done_is_refused_and_writes_nothing(
    tmp_path: Path, capsys, monkeypatch, no_store_settings
) -> None:
    """`relay resume FINISHED --stop-after g00/train` used to record the finished run as stopped again."""
    from orchestrator.cli import main

    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", f"run.workspace={workspace}", "--run-id", "r1"]
    assert main([*argv, "--stop-after", "g00/train"]) == 0
    ledger = workspace / "artifacts" / record_path("r1", LEDGER_FILE)
    before = ledger.read_bytes()
    capsys.readouterr()
    assert main(["resume", "r1", "--workspace", str(workspace), "--stop-after", "data/split"]) == 2
    assert "--stop-after: run r1 has already done data/split" in capsys.readouterr().err
    assert ledger.read_bytes() == before
    assert main(["resume", "r1", "--workspace", str(workspace), "--stop-after", "g00/evaluate"]) == 0
    assert json.loads(ledger.read_bytes())["stages"]["g00/evaluate"]["state"] == "succeeded"
