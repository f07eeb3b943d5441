"""`relay resume` keeps what `--no-cache` / `--rerun-from` asked for: stages not reached yet are computed afresh."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.cli.run.run_record import rerun_on_resume
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


def test_a_finished_run_is_not_resumed_to_a_stop_and_a_stopped_one_keeps_its_later_stages(
    tmp_path: Path, capsys, no_store_settings
) -> None:
    """`relay resume FINISHED --stop-after g00/train` recorded the finished run as stopped again, and a resume
    stopping before where a run had got to dropped the later stages from its ledger."""
    from orchestrator.cli import main

    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", f"run.workspace={workspace}", "--run-id"]
    assert main([*argv, "stopped", "--stop-after", "g00/evaluate"]) == 0
    assert main(["resume", "stopped", "--workspace", str(workspace), "--stop-after", "g00/train"]) == 0
    stages = json.loads((workspace / "artifacts" / record_path("stopped", LEDGER_FILE)).read_bytes())["stages"]
    assert stages["g00/evaluate"]["state"] == "succeeded", "a stage done before stays in the ledger"

    assert main([*argv, "done", "crest.generations=1"]) == 0
    ledger = workspace / "artifacts" / record_path("done", LEDGER_FILE)
    before = ledger.read_bytes()
    capsys.readouterr()
    assert main(["resume", "done", "--workspace", str(workspace), "--stop-after", "data/split"]) == 2
    assert "--stop-after: run done has finished, so stopping it after data/split" in capsys.readouterr().err
    assert ledger.read_bytes() == before
