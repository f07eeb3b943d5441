"""Ray's start-failure lines are dropped after the user's Ctrl-C, and printed, after the start, without one."""

from __future__ import annotations

import logging

from orchestrator.engine.ray_start_log import SERVICES_LOGGER, start_failures_unless_interrupted


def test_a_start_failure_is_printed_after_the_start_without_a_ctrl_c(caplog) -> None:
    caplog.set_level(logging.INFO)
    with start_failures_unless_interrupted([]):
        logging.getLogger(SERVICES_LOGGER).error("Failed to start the dashboard")
        assert "Failed to start the dashboard" not in caplog.text  # held while Ray starts
    assert [record.getMessage() for record in caplog.records] == ["Failed to start the dashboard"]


def test_a_start_failure_the_users_ctrl_c_caused_is_not_printed(caplog) -> None:
    caplog.set_level(logging.INFO)
    with start_failures_unless_interrupted([2]):  # interrupts_kept noted a SIGINT
        logging.getLogger(SERVICES_LOGGER).error("Failed to start the dashboard")
    logging.getLogger(SERVICES_LOGGER).error("after the start")  # the logger is as it was
    assert [record.getMessage() for record in caplog.records] == ["after the start"]
