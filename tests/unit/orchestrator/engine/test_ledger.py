"""Reading the run's ledger while its driver rewrites it."""

from __future__ import annotations

import json

import pytest

from orchestrator.engine import ledger
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import ArtifactError


class TornReads(ArtifactStore):
    """A store whose first ``torn`` reads of a record return only its first half, as a read racing a rewrite."""

    def __init__(self, uri: str, torn: int) -> None:
        super().__init__(uri)
        self.torn = torn
        self.reads = 0

    def read_record(self, relative: str) -> bytes | None:
        data = super().read_record(relative)
        self.reads += 1
        return data[: len(data) // 2] if data is not None and self.reads <= self.torn else data


def write_ledger(store: ArtifactStore, run_id: str, content: dict) -> None:
    store.write_record(ledger.record_path(run_id, ledger.LEDGER_FILE), json.dumps(content).encode())


def test_a_torn_read_of_the_ledger_is_read_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ledger, "TORN_READ_PAUSE_S", 0.0)
    store = TornReads(str(tmp_path), torn=2)
    content = {"run_id": "r1", "status": "RUNNING", "stages": {"g00/train": {"state": "running"}}}
    write_ledger(store, "r1", content)
    assert ledger.read_ledger(store, "r1") == content
    assert store.reads == 3


def test_a_ledger_that_never_parses_is_an_artifact_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ledger, "TORN_READ_PAUSE_S", 0.0)
    store = TornReads(str(tmp_path), torn=100)
    write_ledger(store, "r1", {"run_id": "r1", "stages": {}})
    with pytest.raises(ArtifactError, match="ledger.json.*not valid JSON"):
        ledger.read_ledger(store, "r1")
    assert store.reads == ledger.TORN_READ_ATTEMPTS


def test_no_ledger_yet_is_none(tmp_path) -> None:
    assert ledger.read_ledger(ArtifactStore(str(tmp_path)), "r1") is None
