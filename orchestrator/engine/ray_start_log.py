"""What Ray prints while Relay starts a local instance or joins a cluster, cut to what a user can act on.

``filtered`` is the block that every such cut runs in (here, in ``ray_session``'s start and in `relay tune`).

Two of Ray 2.60's start-up lines got in the way of every `relay run`:

- "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt
  out": the instance is Relay's own, started and stopped with the run, and its token is made
  and used without the user's help. Ray skips the line when ``RAY_AUTH_MODE`` is set, but
  setting it before the start made every call fail with ``InvalidAuthToken`` (Ray reads its
  config when imported), so the line is filtered out instead.
- "View the dashboard at http://..." wraps the address in ANSI colour codes, which a log file
  or a CI page shows as ``[1m[32m``. The line stays; the codes go when stderr is not a terminal,
  also when the run joins a cluster (``--address``: `relay logs` and CI pages read it there too).

The token notice of a cluster a user started is theirs, and stays.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
WORKER_LOGGER = "ray._private.worker"
TOKEN_ENABLED = "Token authentication is enabled for this Ray cluster"
SERVICES_LOGGER = "ray._private.services"  # Ray's logger for starting its processes (dashboard, GCS, raylet)


class StartFilter(logging.Filter):
    """Drops the token notice (a local start's) and takes the colour codes out of the dashboard line (off a terminal)."""

    def __init__(self, colours: bool, token_notice: bool) -> None:
        super().__init__()
        self.colours = colours
        self.token_notice = token_notice

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token_notice and record.name == TOKEN_LOGGER and str(record.msg).startswith(TOKEN_ENABLED):
            return False
        if not self.colours and isinstance(record.args, tuple):
            record.args = tuple("" if isinstance(arg, str) and arg.startswith("\x1b[") else arg for arg in record.args)
        return True


@contextlib.contextmanager
def start_lines(local: bool) -> Iterator[None]:
    """Within the block, Ray's start-up loggers pass through ``StartFilter`` (``local``: Relay starts the instance)."""
    with filtered(StartFilter(colours=sys.stderr.isatty(), token_notice=not local), TOKEN_LOGGER, WORKER_LOGGER):
        yield


@contextlib.contextmanager
def filtered(chosen: logging.Filter, *names: str) -> Iterator[None]:
    """Within the block, the loggers ``names`` pass their records through ``chosen``; removed however the block ends."""
    loggers = [logging.getLogger(name) for name in names]
    for each in loggers:
        each.addFilter(chosen)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(chosen)


class HeldBack(logging.Filter):
    """Keeps every record of the logger it filters, to be handled later or dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def start_failures_unless_interrupted(interrupted: Sequence[int]) -> Iterator[None]:
    """Ray's lines about its processes failing to start are printed after the block, unless a Ctrl-C came in it.

    Why: a terminal's Ctrl-C reaches Ray's new processes too, and a dashboard it stopped made Ray
    log "ERROR services.py -- Failed to start the dashboard", then the last 20 lines of its log,
    before Relay's "interrupted before the stages started" line: noise about the user's own
    Ctrl-C. ``interrupted`` is ``interrupts_kept``'s list; without a Ctrl-C the lines are printed
    as Ray logged them, once ray.init has returned or raised (a start that failed by itself).
    """
    held = HeldBack()
    try:
        with filtered(held, SERVICES_LOGGER):
            yield
    finally:
        if not interrupted:
            for record in held.records:
                logging.getLogger(SERVICES_LOGGER).handle(record)
