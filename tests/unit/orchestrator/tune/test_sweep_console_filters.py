"""Ray Tune's `Failed to fetch metrics for N trial(s): FileNotFoundError(...)` warning is kept off a sweep's console,
and its traceback of each failed trial is cut to the one line naming the trial's error.

A resumed sweep whose interrupt caught a trial before its first generation printed it, a traceback-like line
about a trial that simply has no result yet (Relay's table shows it `unfinished`). Checked on the real logger,
with a handler of the test's own (Ray may stop its loggers from propagating to the root).
"""

from __future__ import annotations

import logging

from orchestrator.errors import StageError
from orchestrator.tune.console_filters import (
    ANALYSIS_LOGGER,
    CONTROLLER_LOGGER,
    no_fetch_failures,
    one_line_trial_failures,
)
from orchestrator.tune.trial_failures import failure_line


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_only_the_fetch_failure_is_dropped_and_only_while_the_sweep_fits() -> None:
    logger, kept = logging.getLogger(ANALYSIS_LOGGER), Kept()
    logger.addHandler(kept)
    try:
        with no_fetch_failures():
            logger.warning("Failed to fetch metrics for 1 trial(s):\n- t: FileNotFoundError('no result.json')")
            logger.warning("another warning of Ray Tune's")
            logger.warning("Failed to fetch metrics for 1 trial(s):\n- t: PermissionError('result.json')")
            logger.error("Failed to fetch metrics for 1 trial(s): as an error")
        logger.warning("Failed to fetch metrics for 2 trial(s): outside the fit")
    finally:
        logger.removeHandler(kept)
    assert kept.messages == [
        "another warning of Ray Tune's",
        "Failed to fetch metrics for 1 trial(s):\n- t: PermissionError('result.json')",
        "Failed to fetch metrics for 1 trial(s): as an error",
        "Failed to fetch metrics for 2 trial(s): outside the fit",
    ]


class Formatted(logging.Handler):
    """Keeps each record as a console prints it: its message and, when it carries one, its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _a_trials_failure() -> BaseException:
    """The error Ray Tune's controller holds for a failed trial: the trial's StageError, raised in a Ray task."""
    from ray.exceptions import RayTaskError

    stage_error = StageError("g00/train", FloatingPointError("loss is nan"), 1)
    try:
        raise stage_error
    except StageError:
        import traceback

        remote = traceback.format_exc()
    return RayTaskError("ImplicitFunc.train", remote, stage_error).as_instanceof_cause()


def test_a_failed_trial_is_one_line_naming_its_error_and_only_while_the_sweep_fits() -> None:
    """Ray Tune logged each failed attempt with ~50 lines of its own frames; the cause a user acts on was lost."""
    logger, kept = logging.getLogger(CONTROLLER_LOGGER), Formatted()
    logger.addHandler(kept)
    error = _a_trials_failure()
    try:
        with one_line_trial_failures():
            logger.error("Trial task failed for trial run_trial_abc", exc_info=error)
            logger.error("another error of Ray Tune's", exc_info=error)
        logger.error("Trial task failed for trial run_trial_def", exc_info=error)
    finally:
        logger.removeHandler(kept)
    assert kept.lines[0] == (
        "Trial task failed for trial run_trial_abc: StageError: stage 'g00/train' failed after 1 attempt(s): "
        "FloatingPointError: loss is nan"
    )
    assert "raise stage_error" in kept.lines[1], "only the trial failure is cut to one line"
    assert "raise stage_error" in kept.lines[2], "outside a sweep's fit Ray Tune's logger is left as it was"


def test_a_failure_line_is_the_errors_first_line_and_its_type() -> None:
    assert failure_line(RuntimeError("worker died\nmore")) == "RuntimeError: worker died"
    assert failure_line(RuntimeError()) == "RuntimeError"
    assert failure_line(_a_trials_failure()).startswith("StageError: stage 'g00/train' failed")
