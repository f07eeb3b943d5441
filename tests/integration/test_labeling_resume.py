"""A `relay run` killed while it pseudo-labels resumes after the shards it labeled, for real.

The driver runs smoke.yaml in-process (the labeling stage runs in the driver, so SIGKILL stops it
mid-stage) with one image a shard, so the stage spills many parts before it ends. It is killed once
parts are in its scratch space; `relay resume` must replay them and label only the rest
(``resumed_from_rows``, said on the "done" line), and the spills must be gone after. Then the
parts the killed attempt left are put back and the stage is rerun on request (`--rerun-from`) in
a new run: it must ignore them, label every row, and write the very table the resumed attempt
wrote (same digest): a resume changes nothing in the output.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine.artifacts import TEMP_MARK
from tests.integration.cluster import processes_of_group, stop_processes, wait_for
from tests.integration.relay_cli import manifests, relay, relay_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
SETTINGS = ("train.steps=20", "data.imbalance_ratio=1", "label.shard_size=1", "run.executor=local")
STOP = ("--stop-after", "g00/pseudo_label")
KILL_AFTER_PARTS = 20


def spilled_parts(workspace: Path) -> list[Path]:
    """The whole parts spilled so far: not a ``part-N.tmp-HEX`` the kill caught mid-write, which no resume reads."""
    found = (workspace / "artifacts" / "stages").glob("*/scratch/part-*")
    return sorted(path for path in found if TEMP_MARK not in path.name)


def labeling_spilled_or_done(workspace: Path) -> bool:
    """Enough shards spilled to kill the run, or the stage already done (which fails the test, not a wait)."""
    return len(spilled_parts(workspace)) >= KILL_AFTER_PARTS or "g00/pseudo_label" in manifests(workspace)


def labeling_killed(workspace: Path, log_file: Path) -> list[Path]:
    """Start the run, SIGKILL its driver once the labeling stage has spilled some shards; the parts left."""
    command = [sys.executable, "-m", "orchestrator.cli", "run", str(SMOKE), *SETTINGS, "--run-id", "killed", *STOP]
    ours: set[int] = set()  # the driver's processes, taken before the kill breaks the process tree
    with log_file.open("w") as log:
        driver = subprocess.Popen(
            command, cwd=ROOT, env=relay_env(workspace), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(lambda: labeling_spilled_or_done(workspace), 600, "labeled shards spilled", poll_s=0.05)
            ours = processes_of_group(driver.pid)
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
        finally:
            stop_processes(processes_of_group(driver.pid) | ours)
    assert "g00/pseudo_label" not in manifests(workspace), "labeling finished before the kill; the test saw no resume"
    return spilled_parts(workspace)


def test_killed_labeling_resumes_after_its_spilled_shards_and_writes_the_same_table(tmp_path):
    workspace = tmp_path / "ws"
    parts = labeling_killed(workspace, tmp_path / "driver.log")
    scratch = parts[0].parent
    left = tmp_path / "left_by_the_killed_attempt"
    shutil.copytree(scratch, left)

    resumed = relay("resume", "killed", *STOP, workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    manifest = manifests(workspace)["g00/pseudo_label"]
    rows, replayed = manifest["metrics"]["rows"], manifest["metrics"]["resumed_from_rows"]
    print(f"\nkilled with {len(parts)} shards spilled; resume replayed {replayed:.0f} of {rows:.0f} rows")
    assert len(parts) <= replayed < rows, "the resumed attempt labeled only the shards the killed one had not"
    assert f"resumed at row {replayed:.0f} from the shards an earlier attempt labeled" in resumed.stderr
    assert not scratch.exists(), "the spilled shards go once the output is stored"

    shutil.copytree(left, scratch)
    rerun = relay(
        "run",
        str(SMOKE),
        *SETTINGS,
        "--run-id",
        "rerun",
        "--rerun-from",
        "g00/pseudo_label",
        *STOP,
        workspace=workspace,
    )
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    fresh = manifests(workspace)["g00/pseudo_label"]
    assert fresh["fingerprint"] == manifest["fingerprint"]
    assert fresh["metrics"]["resumed_from_rows"] == 0 and fresh["metrics"]["rows"] == rows
    assert "resumed at row" not in rerun.stderr
    assert fresh["outputs"]["g00/pseudo_labels"]["digest"] == manifest["outputs"]["g00/pseudo_labels"]["digest"]
    assert fresh["metrics"] == {**manifest["metrics"], "resumed_from_rows": 0.0}
