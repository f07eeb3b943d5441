"""One vocabulary of run statuses and stage states (engine/ledger.py), for the runner that writes a ledger and the
commands that read it: every status a ledger records, an older version's included, reads back as its member."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.records.run_status import read_view, run_status
from orchestrator.cli.records.runs import status_filter
from orchestrator.engine import ledger
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import DONE_STATES, Ledger, RunStatus, StageState, done_in

WRITTEN = (RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED, RunStatus.INTERRUPTED)
SHOWN = "STARTING, RUNNING, FINISHED, FAILED, STOPPED, INTERRUPTED, NOT STARTED, UNREADABLE"


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


def test_the_statuses_are_the_words_relay_runs_shows_in_its_order() -> None:
    assert ", ".join(RunStatus) == SHOWN
    assert [status.value for status in StageState] == ["pending", "running", "cached", "succeeded", "failed"]


@pytest.mark.parametrize("status", WRITTEN)
def test_every_status_the_runner_writes_reads_back_as_its_member(store: ArtifactStore, status: RunStatus) -> None:
    Ledger(store, "toy", "r1", "v1", 0, None).write(status, {"data": {"state": StageState.SUCCEEDED}})
    raw = json.loads(store.read_record(ledger.record_path("r1", ledger.LEDGER_FILE)) or b"")
    assert (raw["status"], raw["stages"]["data"]["state"]) == (status.value, "succeeded")  # the plain words
    assert run_status(store, "r1") is status  # its driver, this process, lives: RUNNING stays RUNNING


@pytest.mark.parametrize("word", [status.value for status in WRITTEN])
def test_an_older_versions_ledger_reads_back_as_the_member(store: ArtifactStore, word: str) -> None:
    """A ledger as an earlier Relay wrote it: the status a plain string, no driver recorded."""
    old = {"run_id": "r1", "pipeline": "toy", "status": word, "stages": {"data": {"state": "succeeded"}}}
    store.write_record(ledger.record_path("r1", ledger.LEDGER_FILE), json.dumps(old).encode())
    view = read_view(store, "r1").view
    assert view is not None and view.status is RunStatus(word)
    assert run_status(store, "r1") is RunStatus(word) and run_status(store, "r1") == word


def test_the_statuses_a_reader_derives_are_members(store: ArtifactStore) -> None:
    assert run_status(store, "never") is RunStatus.NOT_STARTED
    store.write_record(ledger.record_path("bad", ledger.LEDGER_FILE), b"[]")
    assert run_status(store, "bad") is RunStatus.UNREADABLE
    ledger.claim_run(store, "claimed")  # this process, alive, as its driver
    assert run_status(store, "claimed") is RunStatus.RUNNING


def test_a_failed_start_reads_back_failed(store: ArtifactStore) -> None:
    ledger.record_failed_start(store, "r1", "Ray did not start", "2026-01-01T00:00:00+00:00")
    assert run_status(store, "r1") is RunStatus.FAILED


def test_only_running_and_starting_runs_are_live() -> None:
    assert {status for status in RunStatus if status.is_live} == {RunStatus.RUNNING, RunStatus.STARTING}


def test_the_status_filter_takes_every_word_as_its_member() -> None:
    assert status_filter("not-started,unreadable,Failed") == [
        RunStatus.NOT_STARTED,
        RunStatus.UNREADABLE,
        RunStatus.FAILED,
    ]
    assert status_filter(",".join(RunStatus)) == list(RunStatus)


def test_done_stages_are_read_from_the_plain_words() -> None:
    stages = {"a": {"state": "succeeded"}, "b": {"state": "cached"}, "c": {"state": "failed"}, "d": {"state": "x"}}
    assert done_in(stages) == {"a", "b"}
    assert set(DONE_STATES) == {StageState.SUCCEEDED, StageState.CACHED}
