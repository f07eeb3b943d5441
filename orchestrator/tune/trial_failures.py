"""A trial that failed in a way a retry repeats is not run again by Ray Tune's retries in the same sweep.

Why: Ray Tune retries a failed trial (``FailureConfig``, ``sweep.TRIAL_RETRIES``) whatever its error,
so a trial whose training diverged (``FloatingPointError: loss is nan``) trained the failing stage
three times, with the same code, values, inputs and seed, and failed the same way each time. The
retries are there for what does change: a trial's worker lost with its node, a start-up timeout.
A failure the stage policy never retries (``policy.decide``: bad values, bugs, non-finite losses) is
kept beside the trial's ledger with the sweep session's id; a retry in that session fails at once
with it. A new session (`relay tune CONFIG --resume`, after the cause was fixed) runs the trial again.
"""

from __future__ import annotations

import json
import logging

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import record_path
from orchestrator.engine.policy import Decision, decide
from orchestrator.errors import ArtifactError, RelayError, StageError

logger = logging.getLogger(__name__)

FAILED_FOR_GOOD = "failed_for_good.json"  # beside a trial's ledger: {"session": ..., "error": ...}


class RepeatedTrialFailure(RelayError):
    """An earlier attempt of the trial, in this sweep session, failed in a way a retry repeats."""


def repeats_on_retry(error: BaseException) -> bool:
    """Whether ``error`` (a trial's, a StageError's cause counted) would recur on a retry: the stage policy's
    deterministic errors; never Tune's own stop (SystemExit) or a Ctrl-C."""
    cause = error.cause if isinstance(error, StageError) else error
    return isinstance(cause, Exception) and decide(cause, attempt=1, max_retries=1) is Decision.RAISE


def keep_failure(store: ArtifactStore, run_id: str, session: str, error: BaseException) -> None:
    """Keep the trial's failure for its retries in ``session`` when a retry would repeat it."""
    if not repeats_on_retry(error):
        return
    record = {"session": session, "error": f"{type(error).__name__}: {error}"}
    try:
        store.write_record(record_path(run_id, FAILED_FOR_GOOD), json.dumps(record).encode())
    except ArtifactError as unwritable:  # the trial's own failure is what it raises; its retries then run it again
        logger.warning("could not keep the trial's failure for its retries: %s", unwritable)


def failure_line(error: BaseException) -> str:
    """A trial's failure in one line, ``Type: first line of its message``; a RayTaskError stands for the trial's
    own error (its ``cause``), whose message Ray prefixes with the remote traceback."""
    from ray.exceptions import RayTaskError  # called while a sweep runs: Ray is imported by then

    shown = error.cause if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException) else error
    lines = str(shown).strip().splitlines()
    return f"{type(shown).__name__}: {lines[0]}" if lines else type(shown).__name__


def refuse_repeat(store: ArtifactStore, run_id: str, session: str) -> None:
    """Raise ``RepeatedTrialFailure`` when an earlier attempt of this trial in ``session`` failed for good."""
    raw = store.read_record(record_path(run_id, FAILED_FOR_GOOD))
    kept = json.loads(raw) if raw else {}
    if kept.get("session") == session:
        raise RepeatedTrialFailure(
            f"{kept['error']} (in an earlier attempt of this trial; with the same code, values and inputs a "
            "retry fails the same way, so it is not run again. If the values the search chose caused it, that is "
            "the trial's result; if code or data did, fix them, then relay tune CONFIG --resume runs it again)"
        )
