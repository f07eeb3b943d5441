"""Two real runs of one pipeline in one workspace at once: each stage is computed by one of them, never by both.

Why: a sweep's trials that share their first generation each trained the same ``g00/train`` together (three
times the compute), all writing one stage folder. Two interpreters stand for the twins, each running
``relay.run`` on the smoke pipeline. The first is held at the start of its ``g00/train`` (by a log handler,
after it claimed the stage and before the stage body runs); the second is started then, and must wait for the
first rather than train too. Once it says it waits (or, without claims, once it has finished on its own), the
first is let go. Outcome, whatever the machine's load: every stage was computed by exactly one run, and both
runs finished.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import wait_for
from tests.integration.relay_cli import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"

TWIN = """
import logging, pathlib, sys, time
import relay

config, workspace, run_id, signals = sys.argv[1], sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])

class Signals(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if run_id == "first" and message.startswith("run g00/train (attempt 1"):
            (signals / "first-holds-g00-train").touch()
            while not (signals / "go").exists():
                time.sleep(0.1)
        if run_id == "second" and message.startswith("g00/train waits"):
            (signals / "second-waits").touch()

runner_log = logging.getLogger("orchestrator.engine.runner")
runner_log.addHandler(Signals())
runner_log.setLevel(logging.INFO)
summary = relay.run(
    config,
    ["run.executor=local", "crest.generations=1", "train.steps=20", "train.report_every=10"],
    workspace=workspace,
    run_id=run_id,
)
print("STATUS", summary.status, flush=True)
"""


def start_twin(run_id: str, workspace: Path, signals: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", TWIN, str(SMOKE), str(workspace), run_id, str(signals)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def stage_states(workspace: Path, run_id: str) -> dict[str, str]:
    ledger = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())
    return {name: entry["state"] for name, entry in ledger["stages"].items()}


def test_two_runs_at_once_compute_each_stage_once(tmp_path: Path) -> None:
    workspace, signals = tmp_path / "ws", tmp_path / "signals"
    signals.mkdir()
    logs = {run_id: tmp_path / f"{run_id}.log" for run_id in ("first", "second")}
    first = start_twin("first", workspace, signals, logs["first"])
    second = None
    try:
        wait_for(
            lambda: (signals / "first-holds-g00-train").exists() or first.poll() is not None, 600, "the first's train"
        )
        assert first.poll() is None, logs["first"].read_text()[-4000:]
        second = start_twin("second", workspace, signals, logs["second"])
        wait_for(lambda: (signals / "second-waits").exists() or second.poll() is not None, 600, "the second's wait")
        (signals / "go").touch()
        codes = {"first": first.wait(timeout=600), "second": second.wait(timeout=600)}
    finally:
        (signals / "go").touch()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    for run_id, code in codes.items():
        assert code == 0, logs[run_id].read_text()[-4000:]
    states = {run_id: stage_states(workspace, run_id) for run_id in codes}
    assert set(states["first"]) == set(states["second"]) and "g00/train" in states["first"]
    for stage in states["first"]:
        pair = sorted(states[run_id][stage] for run_id in codes)
        assert pair == ["cached", "succeeded"], (stage, pair)
    assert states["first"]["g00/train"] == "succeeded"
    assert (signals / "second-waits").exists()  # it said it waits
