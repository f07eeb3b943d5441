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


def test_a_resumed_attempt_keeps_what_the_earlier_one_computed(tmp_path) -> None:
    """A resume meets the stages its run already ran as cache hits; their entries keep the attempt that ran them."""
    store = ArtifactStore(str(tmp_path))
    first = ledger.Ledger(store, "toy", "r1", "v1", 0, None)
    ran = {"state": "succeeded", "fingerprint": "f1", "duration_s": 31.0, "node": "n1", "attempts": 1}
    first.write("INTERRUPTED", {"train": ran, "evaluate": {"state": "pending", "fingerprint": None}})
    again = ledger.Ledger(store, "toy", "r1", "v1", 0, None)
    hit = {"state": "cached", "fingerprint": "f1", "duration_s": 0.0, "node": None, "attempts": 0}
    other = {"state": "cached", "fingerprint": "f2", "duration_s": 0.0, "node": None, "attempts": 0}
    again.write("FINISHED", {"train": hit, "evaluate": other})
    stages = ledger.read_ledger(store, "r1")["stages"]
    assert stages["train"] == ran  # not "cached, 0 s"
    assert stages["evaluate"] == other  # another run's output: a cache hit indeed
    third = ledger.Ledger(store, "toy", "r1", "v1", 0, None)
    third.write("FINISHED", {"train": {**hit, "fingerprint": "f3"}, "evaluate": other})
    assert ledger.read_ledger(store, "r1")["stages"]["train"]["fingerprint"] == "f3"  # a changed stage is new
