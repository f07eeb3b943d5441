"""A trial's failure a retry would repeat is kept for its retries in the sweep session, and only for those."""

from __future__ import annotations

import pytest

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import StageError, WorkerLostError
from orchestrator.tune.trial_failures import RepeatedTrialFailure, keep_failure, refuse_repeat, repeats_on_retry

DIVERGED = StageError("g01/train", FloatingPointError("loss is nan at step 12 of 60"), attempts=1)


def test_a_diverged_stage_fails_the_trials_retries_in_the_same_session_at_once(tmp_path) -> None:
    store = ArtifactStore(str(tmp_path))
    keep_failure(store, "sweep-a1", "session-1", DIVERGED)
    with pytest.raises(RepeatedTrialFailure, match=r"FloatingPointError: loss is nan at step 12 of 60") as raised:
        refuse_repeat(store, "sweep-a1", "session-1")
    assert "relay tune CONFIG --resume" in str(raised.value)
    assert "If the values the search chose caused it, that is the trial's result" in str(raised.value)
    assert "stage 'g01/train' failed" in str(raised.value)


def test_a_new_session_and_another_trial_run_as_before(tmp_path) -> None:
    store = ArtifactStore(str(tmp_path))
    keep_failure(store, "sweep-a1", "session-1", DIVERGED)
    refuse_repeat(store, "sweep-a1", "session-2")  # `relay tune CONFIG --resume`: the cause may be fixed
    refuse_repeat(store, "sweep-b2", "session-1")  # another trial of the session


@pytest.mark.parametrize(
    "error",
    [
        StageError("g00/train", WorkerLostError("g00/train", "its node died"), attempts=3),
        StageError("g00/train", OSError("disk full"), attempts=1),
        SystemExit(0),  # Tune pausing or stopping the trial
        KeyboardInterrupt(),
    ],
    ids=["lost worker", "os error", "tune's stop", "ctrl-c"],
)
def test_failures_a_retry_may_not_repeat_are_not_kept(tmp_path, error) -> None:
    store = ArtifactStore(str(tmp_path))
    assert not repeats_on_retry(error)
    keep_failure(store, "sweep-a1", "session-1", error)
    refuse_repeat(store, "sweep-a1", "session-1")


@pytest.mark.parametrize("cause", [ValueError("threshold must be in (0, 1)"), KeyError("pseudo_labels")])
def test_bad_values_and_bugs_repeat(cause) -> None:
    assert repeats_on_retry(StageError("g00/label", cause, attempts=1))
    assert repeats_on_retry(cause)  # raised by the trial itself (a tune.metric its stage does not report)
