"""`relay run` ends with its table and the browse hint: no line the tracker logs comes after the table.

Before the fix, the MLflow lines the tracker logs as the run closes ("removed alias(es) gen-01 of model ...",
late "registered gNN/model" lines) print after the results table, so the table was not the last
thing on the screen. The CLI runs in its own process here, stdout and stderr in one stream, as a
terminal shows them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ")


def relay_run(workspace: Path, *overrides: str) -> list[str]:
    """The lines a terminal shows for one tiny local run (stdout and stderr interleaved as written)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", f"run.workspace={workspace}", *overrides]
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout.splitlines()


def test_the_table_and_browse_hint_come_after_the_trackers_closing_lines(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    relay_run(workspace, "crest.generations=2")  # registers gen-00 and gen-01 of model `smoke`
    lines = relay_run(workspace, "crest.generations=1")  # its end removes the earlier run's gen-01 alias

    title = next(i for i, line in enumerate(lines) if "per-generation results on the test set" in line)
    removed = next(i for i, line in enumerate(lines) if "removed alias(es) gen-01 of model smoke" in line)
    assert removed < title, "\n".join(lines)
    assert not [line for line in lines[title:] if LOG_LINE.match(line)], "\n".join(lines[title:])
    closing = [line for line in lines[title:] if line.strip()]
    assert closing[-1].startswith("Table again:  relay generations "), "\n".join(closing)
