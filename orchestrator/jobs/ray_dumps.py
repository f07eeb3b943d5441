"""Ray's periodic debug dumps in a job's log, left out of what `relay logs` shows.

A job's log is everything its driver printed, and Ray's own processes print there too when they log to
stderr (``RAY_LOG_TO_STDERR=1`` on the cluster): the raylet's state dump, every line marked ``[state-dump]``,
and the driver's core worker's event statistics, a record ending ``Event stats:`` followed by some 50
unmarked lines of counters, once a minute (``RAY_event_stats_print_interval_ms``). None of it is a stage's
output or anything a Relay user acts on; `ray job logs ID` still shows the raw log.

A dump's unmarked lines are told by their shape (blank, indented, a counter, a heading, a separator), so a
line of any other shape ends it and is shown: a stage's line (``(g00/train pid=N) ...``), Relay's own log
lines and tables (a blank line right after a dump goes with it). Lines stream in chunks that may end mid-line (`relay logs --follow`), so ``DumpFilter``
holds a line back until its end has come.
"""

from __future__ import annotations

import re

STATE_DUMP = "[state-dump]"  # the raylet's mark on every line of its NodeManager dump
# A Ray C++ log record that opens a dump: `[2026-12-07 07:16:14,502 I 14271 14300] (python-core-driver-...)
# core_worker.cc:591: Event stats:`, or the GCS's `... gcs_server.cc:1307: Gcs Debug state:`
DUMP_HEAD = re.compile(
    r"^\[\d{4}-\d\d-\d\d [\d:,.]+ [A-Z] \d+ \d+\] \([^)]*\) \S+:\d+: .*(Event stats|Debug state): *$"
)
DUMP_BODY = re.compile(
    r"""^(
        \s*                                              # blank
      | [\t ].*                                          # an indented counter: `\tPeriodicalRunner... - 2 total`
      | -\ .*                                            # a listed counter: `- RegisterNode request count: 0`
      | -{3,}                                            # a separator
      | [A-Z][A-Z0-9_]*                                  # a pubsub channel: `GCS_JOB_CHANNEL`
      | [A-Za-z][\w ]*:\ ?                               # a heading: `Event stats:`, `GcsNodeManager: `
      | (Global\ stats|Queueing\ time|Execution\ time):\ .*
    )$""",
    re.VERBOSE,
)


class DumpFilter:
    """A job's log with Ray's debug dumps left out, fed whole or chunk by chunk."""

    def __init__(self) -> None:
        self._partial = ""  # the chunk's last line, until its newline comes
        self._in_dump = False

    def feed(self, text: str) -> str:
        """The complete lines of ``text`` (with what came before it) that are not part of a dump."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return "".join(f"{line}\n" for line in lines if self._shown(line))

    def flush(self) -> str:
        """The last line when the log ended without a newline, unless it is part of a dump."""
        rest, self._partial = self._partial, ""
        return rest if rest and self._shown(rest) else ""

    def _shown(self, line: str) -> bool:
        if STATE_DUMP in line:
            return False
        if DUMP_HEAD.match(line):
            self._in_dump = True
            return False
        self._in_dump = self._in_dump and DUMP_BODY.match(line) is not None
        return not self._in_dump


def without_dumps(log: str) -> str:
    """A whole job log without Ray's debug dumps."""
    dumps = DumpFilter()
    return dumps.feed(log) + dumps.flush()
