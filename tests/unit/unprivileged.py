"""The `relay` command run as a user a file's mode binds, for tests of real permission errors.

A non-root user is refused by the mode alone; root is run without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
(``setpriv``, util-linux), which is all that lets it read or write a path whose mode says no.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_READ_OVERRIDE = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged() -> list[str]:
    """The command prefix under which a chmod-000 path raises PermissionError, as it does for a user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root reads a chmod-000 path, and setpriv (util-linux), which drops that power, is not installed")
    return ["setpriv", *NO_READ_OVERRIDE]


def relay_with_mode(argv: list[str], closed: Path, mode: int) -> subprocess.CompletedProcess[str]:
    """``relay ARGV`` in a fresh process, with ``closed`` set to ``mode`` meanwhile (then put back, else pytest cannot
    remove tmp_path), run as a user the mode binds; no RAY_, RELAY_ or MLFLOW_ variable of the test's reaches it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_", "MLFLOW_"))}
    before = closed.stat().st_mode
    closed.chmod(mode)
    try:
        return subprocess.run(
            [*unprivileged(), sys.executable, "-m", "orchestrator.cli", *argv],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        closed.chmod(before)
