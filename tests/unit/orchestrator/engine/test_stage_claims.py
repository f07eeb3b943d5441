"""Claims on stages: a run waits for a twin computing the same stage, then takes its result as a cache hit.

Why: a sweep's trials that share their first generation each trained the same ``g00/train`` at once (three times
the compute), all writing one stage folder. Here the twin is this test, holding the claim a real run would hold
(``StageClaims`` on the same store) while a real Runner on the LocalExecutor runs on another thread; the twin's
result is the stage folder of the same stage computed in another store (fingerprints do not depend on the store).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import pytest

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine import runner as runner_module
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner, RunStatus, RunSummary, StageState
from orchestrator.engine.stage_claims import StageClaims
from orchestrator.errors import StageError
from tests.unit.orchestrator.engine.toy import CALLS, RecordingTracker, bad_value, toy

WAIT_S = 60.0  # how long the test waits for what a thread must do: a bound for a stuck run, never a measure


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(runner_module, "TWIN_POLL_S", 0.05)


def runner_on(store: Path) -> Runner:
    return Runner(ArtifactStore(str(store)), LocalExecutor(), RecordingTracker(), code_version="v1", seed=0)


def computed_elsewhere(tmp_path: Path) -> RunSummary:
    """Every toy stage computed in a store of its own: what the twin will have left, and each stage's fingerprint."""
    summary = runner_on(tmp_path / "elsewhere").run(toy(), "elsewhere")
    CALLS.clear()
    return summary


def started(target) -> tuple[threading.Thread, dict]:
    """``target`` on a thread of its own; the dict gets its "result" or its "error"."""
    box: dict = {}

    def body() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S:.0f} s: {what}"
        time.sleep(0.02)


def test_a_stage_another_run_computes_is_waited_for_then_a_cache_hit(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator")
    twin = computed_elsewhere(tmp_path)
    fingerprint = twin.stages["data"].fingerprint
    store = tmp_path / "shared"
    claims = StageClaims(ArtifactStore(str(store)))
    assert claims.take(fingerprint)

    thread, box = started(lambda: runner_on(store).run(toy(), "waiting"))
    until(lambda: "data waits: another run is computing the same stage" in caplog.text, "the run says it waits")
    assert CALLS == []  # it did not compute the stage the twin holds
    shutil.copytree(tmp_path / "elsewhere" / "stages" / fingerprint, store / "stages" / fingerprint, dirs_exist_ok=True)
    claims.release(fingerprint)
    thread.join(WAIT_S)

    assert not thread.is_alive() and "error" not in box
    summary = box["result"]
    assert summary.status is RunStatus.FINISHED
    assert summary.stages["data"].state is StageState.CACHED
    assert CALLS == ["g00/train", "g00/evaluate"]
    assert caplog.text.count("data waits") == 1  # said once, not at every look
    (said,) = [record for record in caplog.records if "data waits" in record.getMessage()]
    assert said.levelno == logging.WARNING  # a sweep's console shows a trial's warnings, not its INFO lines


def test_a_stage_whose_twin_ended_without_a_result_is_computed_here(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator")
    fingerprint = computed_elsewhere(tmp_path).stages["data"].fingerprint
    store = tmp_path / "shared"
    claims = StageClaims(ArtifactStore(str(store)))
    assert claims.take(fingerprint)

    thread, box = started(lambda: runner_on(store).run(toy(), "waiting"))
    until(lambda: "data waits" in caplog.text, "the run says it waits")
    claims.release(fingerprint)  # the twin failed or stopped: nothing stored
    thread.join(WAIT_S)

    assert not thread.is_alive() and "error" not in box
    assert box["result"].stages["data"].state is StageState.SUCCEEDED
    assert CALLS == ["data", "g00/train", "g00/evaluate"]


def test_a_run_holds_no_claim_once_it_ended(tmp_path) -> None:
    store = tmp_path / "shared"
    finished = runner_on(store).run(toy(), "finished")
    others = StageClaims(ArtifactStore(str(store)))
    assert all(others.take(outcome.fingerprint) for outcome in finished.stages.values())


def test_a_failed_run_holds_no_claim_on_the_stage_that_failed(tmp_path) -> None:
    store = tmp_path / "shared"
    with pytest.raises(StageError):
        runner_on(store).run(Pipeline("bad", [Stage("bad", bad_value, (), ("out",))]), "failed")
    failed = json.loads((store / "runs" / "failed" / "ledger.json").read_text())["stages"]["bad"]
    assert failed["state"] == "failed"
    assert StageClaims(ArtifactStore(str(store))).take(failed["fingerprint"])


def test_a_claim_held_here_is_refused_to_another_run_until_let_go(tmp_path) -> None:
    store = ArtifactStore(str(tmp_path / "shared"))
    mine, theirs = StageClaims(store), StageClaims(store)
    assert mine.take("f" * 64)
    assert mine.take("f" * 64)  # a run's own claim: its retries keep it
    assert not theirs.take("f" * 64)
    mine.release("f" * 64)
    assert theirs.take("f" * 64)


def test_an_object_store_has_no_claims_and_every_run_computes(tmp_path) -> None:
    store = ArtifactStore("mock:///store")
    assert StageClaims(store).take("f" * 64) and StageClaims(store).take("f" * 64)
