"""Ray's own start-up lines, as Ray 2.60 words them, pass through Relay's filter for a local start or a join."""

from __future__ import annotations

import logging

import pytest
from ray._private.authentication import authentication_token_setup

from orchestrator.engine import ray_start_log


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def kept() -> Kept:
    handler = Kept()
    loggers = [logging.getLogger(name) for name in (ray_start_log.TOKEN_LOGGER, ray_start_log.WORKER_LOGGER)]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.addHandler(handler)
        each.setLevel(logging.INFO)
    yield handler
    for each, level in zip(loggers, levels, strict=True):
        each.removeHandler(handler)
        each.setLevel(level)


def _dashboard_line() -> None:
    """Ray's ``ray.init`` line for a local start, with its colour codes (Ray's module ``ray._private.worker``)."""
    logging.getLogger(ray_start_log.WORKER_LOGGER).info(
        "Started a local Ray instance. View the dashboard at %s%s%s %s%s",
        "\x1b[1m",  # colorama's Style.BRIGHT, Fore.GREEN, then Fore.RESET, Style.NORMAL
        "\x1b[32m",
        "http://127.0.0.1:8265",
        "\x1b[39m",
        "\x1b[22m",
    )


def test_a_local_start_drops_the_token_notice_and_the_colour_codes_off_a_terminal(kept, monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    with ray_start_log.start_lines(local=True):
        authentication_token_setup._warn_token_auth_enabled()  # Ray's own function: its wording is checked too
        authentication_token_setup._warn_token_auth_disabled()  # a user's choice to turn auth off is still said
        _dashboard_line()
    assert len(kept.lines) == 2
    assert kept.lines[0].startswith("Token authentication is disabled")
    assert kept.lines[1] == "Started a local Ray instance. View the dashboard at http://127.0.0.1:8265 "


def test_a_join_keeps_the_clusters_token_notice_and_drops_the_colour_codes_off_a_terminal(kept, monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    with ray_start_log.start_lines(local=False):
        authentication_token_setup._warn_token_auth_enabled()
        _dashboard_line()
    assert kept.lines[0].startswith(ray_start_log.TOKEN_ENABLED)
    assert kept.lines[1] == "Started a local Ray instance. View the dashboard at http://127.0.0.1:8265 "


def test_outside_a_start_ray_s_lines_are_untouched(kept) -> None:
    authentication_token_setup._warn_token_auth_enabled()
    _dashboard_line()
    assert kept.lines[0].startswith(ray_start_log.TOKEN_ENABLED)
    assert "\x1b[" in kept.lines[1]


def test_on_a_terminal_the_dashboard_keeps_its_colours(kept, monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    with ray_start_log.start_lines(local=True):
        _dashboard_line()
    assert "\x1b[32mhttp://127.0.0.1:8265" in kept.lines[0]
