"""What Ray prints while Relay starts a local instance or joins a cluster, cut to what a user can act on.

``filtered`` is the block that every such cut runs in (here, in the executor and in `relay tune`).

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
from collections.abc import Iterator

TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
WORKER_LOGGER = "ray._private.worker"
TOKEN_ENABLED = "Token authentication is enabled for this Ray cluster"


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
