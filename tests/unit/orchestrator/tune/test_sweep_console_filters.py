"""Ray Tune's `Failed to fetch metrics for N trial(s): FileNotFoundError(...)` warning is kept off a sweep's console.

A resumed sweep whose interrupt caught a trial before its first generation printed it, a traceback-like line
about a trial that simply has no result yet (Relay's table shows it `unfinished`). Checked on the real logger,
with a handler of the test's own (Ray may stop its loggers from propagating to the root).
"""

from __future__ import annotations

import logging

from orchestrator.tune.console_filters import ANALYSIS_LOGGER, no_fetch_failures


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
