"""`relay resume` keeps what `--no-cache` / `--rerun-from` asked for: stages not reached yet are computed afresh."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.cli.common import rerun_on_resume
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import COMMAND_FILE, LEDGER_FILE, record_path


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
