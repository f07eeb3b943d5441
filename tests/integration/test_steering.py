"""See and steer a run through the real CLI: progress in a terminal and in logs, `relay runs`, reruns on request.

The first run happens in a pseudo-terminal (os.openpty), as a user at a shell sees it: the stages
run in Ray workers, yet the driver draws a progress bar per running stage (its unit, rate, ETA and
latest loss), and MLflow's own chatter stays out. What the terminal showed is kept in
``test-artifacts/terminal/relay-run-smoke.txt`` (escape codes removed). The later runs capture stderr like `relay logs`
does, where the same progress comes as plain lines. All share one workspace, so the reruns find
the first run's cache. The `--no-cache` run and its resume run their stages in-process: what they recompute is
their point, not Ray (each Ray start cost about 8 s).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.integration.relay_cli import ROOT, artifacts_folder, relay, relay_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# a tqdm bar of the driver: `g00/train:  50%|█████     | 30/60 [00:09<00:09,  3.21steps/s, loss=1.2, mask_rate=0.3]`
TRAIN_BAR = re.compile(r"g00/train:\s+\d+%\|[^|\n]*\| \d+/60 \[[0-9:]+<[0-9:?]+,[^\]\n]*(?:steps/s|s/steps)")
# the same progress as a plain log line (no terminal): `g01/train:  40% 24/60 [00:06<00:09,  4.00steps/s, ...]`
TRAIN_LINE = re.compile(r"orchestrator\.engine\.progress: g01/train:\s+\d+% \d+/60 \[")
IN_PROCESS = "run.executor=local"


def run_in_terminal(workspace: Path, *args: str, timeout_s: float = 1200) -> tuple[int, str]:
    """`relay ARGS` with stdout and stderr on a pseudo-terminal; (exit code, everything it drew)."""
    leader, follower = os.openpty()
    # a terminal window of 40x160, as a shell's terminal has: tqdm hides bars below a 0-row window (a bare pty)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**relay_env(workspace), "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the process closed its end of the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
        os.close(leader)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def ledger_states(workspace: Path, run_id: str) -> dict[str, str]:
    ledger = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())
    return {name: entry["state"] for name, entry in ledger["stages"].items()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, str]:
    """A smoke run drawn on a terminal: (workspace, everything the terminal showed)."""
    workspace = tmp_path_factory.mktemp("steer")
    code, screen = run_in_terminal(workspace, "run", str(SMOKE), "--run-id", "first")
    kept = artifacts_folder("terminal") / "relay-run-smoke.txt"  # what the user saw, for a person to read
    kept.write_text(screen)
    print(f"\nterminal text: {kept}")
    assert code == 0, screen[-4000:]
    return workspace, screen


def test_a_terminal_shows_a_progress_bar_per_running_stage(first_run) -> None:
    _, screen = first_run
    assert TRAIN_BAR.search(screen), screen[-4000:]
    assert re.search(r"g00/train:[^\n\r]*loss=", screen), "the bar carries the latest loss"
    assert "system_metrics_monitor" not in screen and "mlflow.store.db.utils" not in screen  # MLflow is quiet
    assert "per-generation results" in screen


def test_runs_lists_the_run_with_its_generations_and_best_metric(first_run) -> None:
    workspace, _ = first_run
    result = relay("runs", workspace=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith("first ")]
    assert row[:4] == ["first", "crest", "FINISHED", "2/2"]
    assert row[4] == "balanced_accuracy" and 0.0 <= float(row[5]) <= 1.0


def test_rerun_from_reruns_that_stage_and_downstream_and_logs_plain_progress(first_run) -> None:
    workspace, _ = first_run
    result = relay("run", str(SMOKE), "--run-id", "again", "--rerun-from", "g01/train", workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]
    states = ledger_states(workspace, "again")
    assert {name for name, state in states.items() if state == "succeeded"} == {"g01/train", "g01/evaluate"}
    assert {name for name, state in states.items() if state == "cached"} == {
        "data/split",
        "g00/train",
        "g00/evaluate",
        "g00/pseudo_label",
        "g00/rebalance",
    }
    assert TRAIN_LINE.search(result.stderr), result.stderr[-4000:]  # no terminal: plain lines, as in `relay logs`


def test_no_cache_reruns_even_a_cached_stage(first_run) -> None:
    workspace, _ = first_run
    result = relay(
        "run",
        str(SMOKE),
        IN_PROCESS,
        "--run-id",
        "fresh",
        "--no-cache",
        "--stop-after",
        "data/split",
        workspace=workspace,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert ledger_states(workspace, "fresh") == {"data/split": "succeeded"}
    assert "rerun on request" in result.stderr
    # The resume keeps the request: g00/train is computed afresh, not taken from the first run's
    # cache (before, a resume dropped --no-cache), while data/split is this run's own output, and
    # its entry still says this run computed it (not "cached": the resume only found it again).
    resumed = relay("resume", "fresh", "--stop-after", "g00/train", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert ledger_states(workspace, "fresh") == {"data/split": "succeeded", "g00/train": "succeeded"}
