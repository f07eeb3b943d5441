"""Real failures, real processes: a SIGKILLed training worker, a SIGKILLed driver, a truncated artifact.

- A Ray Train worker of `g00/train` (2 workers, gloo) is killed with SIGKILL once a checkpoint
  exists: Ray Train restarts the worker group, the stage resumes from its last checkpoint (not
  step 0), and the pipeline finishes with every generation.
- The `relay run` driver is killed with SIGKILL while a later stage runs: `relay resume RUN_ID`
  finishes the run; completed stages are cache hits, only the interrupted stage and what follows run.
- A finished stage's Parquet output is truncated: its digest no longer matches, so the stage is
  recomputed (never loaded) and the resumed pipeline succeeds.

Every process a test starts is stopped by process group and tree, never with `ray stop`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.distributed import train_run_name, train_storage_path
from orchestrator.engine.executors import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner, RunStatus, StageState
from pipelines.builders import crest
from pipelines.stages import train as train_stage
from tests.integration.cluster import processes_of_group, stop_processes, wait_for
from tests.integration.relay_cli import manifests, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


# --------------------------------------------------------------------------- killed training worker


def train_recording_pids(ctx, inputs, params):
    """CReST's train stage, leaving `<pid_dir>/rank<r>-<pid>` behind so the test can find the worker."""
    folder = Path(params["pid_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{ctx.rank}-{os.getpid()}").write_text(str(ctx.attempt))
    return train_stage.train_generation(ctx, inputs, params)


def test_killed_training_worker_resumes_from_its_checkpoint(tmp_path):
    data = apply_overrides(
        load_yaml(SMOKE),
        ["resources.train.workers=2", "train.steps=300", "train.checkpoint_every=20", "train.report_every=20"],
    )
    config = validate_config(crest.CrestConfig, data)
    pids = tmp_path / "pids"
    built = crest.build(config)
    train = built.stage("g00/train")
    patched = dataclasses.replace(train, fn=train_recording_pids, params={**train.params, "pid_dir": str(pids)})
    pipeline = Pipeline(built.name, [patched if s.name == "g00/train" else s for s in built.stages])
    store = ArtifactStore(str(tmp_path / "artifacts"))
    executor = RayExecutor(num_cpus=2)
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["summary"] = Runner(store, executor, NullTracker(), "v1", seed=0).run(pipeline, "kill-worker")
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    driver = threading.Thread(target=drive)
    try:
        driver.start()
        fingerprint = wait_for(
            lambda: _ledger_fingerprint(tmp_path / "artifacts" / "runs" / "kill-worker", "g00/train"),
            300,
            "g00/train to start",
        )
        checkpoints = Path(train_storage_path(store.uri)) / train_run_name(fingerprint, "g00/train")
        wait_for(lambda: _registered_checkpoint(checkpoints), 400, "Ray Train to register a checkpoint")
        victim = int(wait_for(lambda: sorted(pids.glob("rank0-*")), 30, "rank 0's pid")[0].name.split("-")[1])
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        driver.join(timeout=900)
        assert not driver.is_alive(), "the pipeline did not finish after the worker was killed"
    finally:
        executor.shutdown()
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    metrics = summary.manifests["g00/train"].metrics
    rank0_pids = {p.name for p in pids.glob("rank0-*")}
    print(
        f"\nkilled rank 0 (pid {victim}); restarted workers {sorted(rank0_pids)}; resumed at step "
        f"{metrics['resumed_from_step']:.0f} of {config.train.steps}; finished {time.monotonic() - started:.0f} s after the kill"
    )
    assert len(rank0_pids) >= 2, "Ray Train started a new worker group"
    assert metrics["resumed_from_step"] >= config.train.checkpoint_every, "resumed from a checkpoint, not from step 0"
    assert metrics["steps"] == config.train.steps
    assert summary.status is RunStatus.FINISHED
    assert summary.stages["g01/evaluate"].state is StageState.SUCCEEDED
    assert {n for n in summary.stages if n.endswith("/evaluate")} == {
        f"g{k:02d}/evaluate" for k in range(config.crest.generations)
    }


def _registered_checkpoint(run_dir: Path) -> bool:
    """A checkpoint the controller has recorded (a checkpoint_* folder alone may still be uploading)."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(snapshot.get("latest_checkpoint_result"))


def _ledger_fingerprint(run_dir: Path, stage: str) -> str | None:
    try:
        entry = json.loads((run_dir / "ledger.json").read_text())["stages"][stage]
    except (OSError, ValueError, KeyError):
        return None
    return entry["fingerprint"] if entry["state"] == "running" else None


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
        "train.steps=300",
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
    assert "run g01/train (attempt 1" in resumed.stderr
    assert not any(f"run {stage} (" in resumed.stderr for stage in done_before)
    metrics = manifests(workspace)["g01/train"]["metrics"]
    print(
        f"\ndriver killed during g01/train; resume: {len(done_before)} cache hits, g01/train resumed at step "
        f"{metrics['resumed_from_step']:.0f}"
    )
    assert metrics["resumed_from_step"] >= 20, "the interrupted stage resumed from its scratch checkpoint"
    assert json.loads((workspace / "artifacts" / "runs" / "killed" / "ledger.json").read_text())["status"] == "FINISHED"


def test_truncated_output_is_detected_and_recomputed(tmp_path):
    workspace = tmp_path / "ws"
    first = relay(
        "run", str(SMOKE), "train.steps=20", "--run-id", "torn", "--stop-after", "g00/rebalance", workspace=workspace
    )
    assert first.returncode == 0, first.stderr[-4000:]
    manifest = manifests(workspace)["g00/pseudo_label"]
    ref = manifest["outputs"]["g00/pseudo_labels"]
    path = workspace / "artifacts" / ref["path"]
    with path.open("r+b") as handle:
        handle.truncate(ref["size"] // 2)
    resumed = relay("resume", "torn", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "recompute g00/pseudo_label: stored outputs ['g00/pseudo_labels'] are missing or corrupted" in resumed.stderr
    assert "run g00/pseudo_label (attempt 1" in resumed.stderr
    assert "skip g00/train: cache hit" in resumed.stderr
    assert path.stat().st_size == ref["size"]
    assert (
        ArtifactStore(str(workspace / "artifacts")).verify(
            ArtifactStore(str(workspace / "artifacts")).read_manifest(manifest["fingerprint"])
        )
        == []
    )
    assert pq.read_table(path).num_rows > 0
    assert "g01/evaluate" in manifests(workspace)
    print(f"\ntruncated {ref['path']} to {ref['size'] // 2} of {ref['size']} bytes; recomputed and the run finished")
