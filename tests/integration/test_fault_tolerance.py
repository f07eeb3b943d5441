"""Real failures, real processes on one machine: a SIGKILLed driver, a truncated artifact.

(Losing a Ray Train worker mid-stage is tested where it matters more, on the multi-node tier:
tests/cluster/test_node_loss.py SIGKILLs the raylet of the node running 2 Train workers.)

- The `relay run` driver is killed with SIGKILL while a later stage runs: `relay resume RUN_ID`
  finishes the run; completed stages are cache hits, only the interrupted stage and what follows run,
  the interrupted one as its attempt 2 on the console, in the run's ledger and in MLflow alike.
- A finished stage's Parquet output is truncated: its digest no longer matches, so the stage is
  recomputed (never loaded) from its cached inputs when the run is resumed. Its stages run in-process: the
  store's check of its files is the point, not Ray (each Ray start cost about 8 s).

Every process a test starts is stopped by process group and tree, never with `ray stop`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.engine.artifacts import ArtifactStore
from tests.integration.cluster import processes_of_group, stop_processes, wait_for
from tests.integration.relay_cli import manifests, pipeline_runs, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


# --------------------------------------------------------------------------- killed driver, corrupted output


def test_killed_driver_then_resume_redoes_only_the_interrupted_stage(tmp_path):
    workspace = tmp_path / "ws"
    env = {**os.environ, "RELAY_WORKSPACE": str(workspace), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        str(SMOKE),
        "train.steps=150",
        "train.checkpoint_every=20",
        "--run-id",
        "killed",
    ]
    log = (tmp_path / "driver.log").open("w")
    ours: set[int] = set()  # the driver's Ray instance, taken before the kill breaks the process tree
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "g00/rebalance" in manifests(workspace), 600, "generation 0 to finish", poll_s=0.5)
        scratch = lambda: list((workspace / "artifacts" / "stages").glob("*/scratch/checkpoint.pt"))  # noqa: E731
        wait_for(scratch, 300, "an in-stage checkpoint of g01/train", poll_s=0.5)
        ours = processes_of_group(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        stop_processes(processes_of_group(driver.pid) | ours)
        log.close()
    done_before = set(manifests(workspace))
    assert "g01/train" not in done_before and "g00/rebalance" in done_before
    resumed = relay("resume", "killed", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    for stage in sorted(done_before):
        assert f"skip {stage}: cache hit" in resumed.stderr, stage
    assert "run g01/train (attempt 2" in resumed.stderr
    assert_attempts_agree(workspace, "killed", resumed.stderr, {"g01/train": 2, "g01/evaluate": 1})
    assert not any(f"run {stage} (" in resumed.stderr for stage in done_before)
    metrics = manifests(workspace)["g01/train"]["metrics"]
    print(
        f"\ndriver killed during g01/train; resume: {len(done_before)} cache hits, g01/train resumed at step "
        f"{metrics['resumed_from_step']:.0f}"
    )
    assert metrics["resumed_from_step"] >= 20, "the interrupted stage resumed from its scratch checkpoint"
    # the stage's own log line stays in its Ray worker; the driver's "done" line says it
    assert f"resumed at step {metrics['resumed_from_step']:.0f} from an earlier attempt's checkpoint" in resumed.stderr
    assert json.loads((workspace / "artifacts" / "runs" / "killed" / "ledger.json").read_text())["status"] == "FINISHED"


def test_truncated_output_is_detected_and_recomputed(tmp_path):
    workspace = tmp_path / "ws"
    first = relay(
        "run",
        str(SMOKE),
        "train.steps=20",
        "run.executor=local",
        "--run-id",
        "torn",
        "--stop-after",
        "g00/pseudo_label",
        workspace=workspace,
    )
    assert first.returncode == 0, first.stderr[-4000:]
    manifest = manifests(workspace)["g00/pseudo_label"]
    ref = manifest["outputs"]["g00/pseudo_labels"]
    path = workspace / "artifacts" / ref["path"]
    with path.open("r+b") as handle:
        handle.truncate(ref["size"] // 2)
    resumed = relay("resume", "torn", "--stop-after", "g00/pseudo_label", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert (
        "recompute g00/pseudo_label: stored outputs or files ['g00/pseudo_labels'] are missing or corrupted"
        in resumed.stderr
    )
    assert "run g00/pseudo_label (attempt 2" in resumed.stderr  # the run's second computation of it
    assert_attempts_agree(workspace, "torn", resumed.stderr, {"g00/pseudo_label": 2})
    assert "skip g00/train: cache hit" in resumed.stderr
    assert path.stat().st_size == ref["size"]
    assert (
        ArtifactStore(str(workspace / "artifacts")).verify(
            ArtifactStore(str(workspace / "artifacts")).read_manifest(manifest["fingerprint"])
        )
        == []
    )
    assert pq.read_table(path).num_rows > 0
    print(f"\ntruncated {ref['path']} to {ref['size'] // 2} of {ref['size']} bytes; recomputed from the cached model")


def assert_attempts_agree(workspace: Path, run_id: str, console: str, expected: dict[str, int]) -> None:
    """Each stage's attempt is one number: the resume's console line, the ledger's `attempts` and the
    `relay.attempt` tag of the MLflow stage run that finished it (before, 1, 1 and 2 after a resume)."""
    stages = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())["stages"]
    oldest_first = sorted(pipeline_runs(workspace, run_id), key=lambda run: run.info.start_time)
    finished = {  # each stage's newest FINISHED run: the resume's (an earlier one may have finished it too)
        run.data.tags["relay.stage"]: run.data.tags["relay.attempt"]
        for run in oldest_first
        if run.data.tags.get("relay.kind") == "stage" and run.info.status == "FINISHED"
    }
    for stage, attempt in expected.items():
        said = [int(n) for n in re.findall(rf"run {re.escape(stage)} \(attempt (\d+),", console)]
        assert (said, stages[stage]["attempts"], finished.get(stage)) == ([attempt], attempt, str(attempt)), stage
