"""Off a terminal, Ray prints a stage worker's lines under a `(g00/filter pid=N)` prefix without colour codes.

Ray coloured the prefix whatever its output was, so log files and CI output held escape codes around it.
"""

from __future__ import annotations

import io
import os

import pytest
from ray._private.worker import print_worker_logs

from orchestrator.cli import configure_logging

WORKER_LINE = {"pid": 2570, "ip": "10.0.0.1", "localhost": "10.0.0.1", "task_name": "g00/filter", "is_err": False}


def printed_by_ray(line: str) -> str:
    out = io.StringIO()
    print_worker_logs({**WORKER_LINE, "lines": [line]}, out)
    return out.getvalue()


def test_off_a_terminal_the_worker_prefix_has_no_colour_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    configure_logging(verbose=False)  # pytest's captured streams are not terminals
    printed = printed_by_ray("g00/filter kept 0 of 417 pseudo-labels")
    assert "(g00/filter pid=2570)" in printed and "g00/filter kept 0 of 417" in printed
    assert "\x1b[" not in printed, repr(printed)


def test_a_colour_setting_the_user_made_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_COLOR_PREFIX", "1")
    configure_logging(verbose=False)
    assert os.environ["RAY_COLOR_PREFIX"] == "1"
    assert "\x1b[" in printed_by_ray("a line")
