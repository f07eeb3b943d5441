"""Losing a worker node (its raylet SIGKILLed) in the middle of data-parallel training, and of sharded labeling.

- Training: `relay submit` runs g00/train with 2 Ray Train workers, checkpointing to S3. Once a
  checkpoint is registered, the node holding the workers is killed. Ray Train restarts the
  worker group on the surviving node from the last checkpoint; the stage reports the step it
  resumed at (`resumed_from_step`) and the run finishes.
- Labeling: the driver (tests/cluster/driver.py) labels with 2 workers (the stage's task and an
  actor), shards slowed down so the kill lands while shards are in flight. The stage loses the
  worker on the killed node, the runner retries it
  (a lost worker is retried even without stage retries) and the pseudo-label table has the
  same digest as the undisturbed run's.

Each test starts the killed node again at the end (Stack.heal), as an autoscaler would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.yaml_input import layered
from tests.cluster.cluster import wait_for
from tests.cluster.conftest import ROOT, Stack
from tests.cluster.helpers import manifests, read_json, stage_state
from tests.cluster.state import query, wait_for_actors

pytestmark = [pytest.mark.cluster, pytest.mark.cluster_faults, pytest.mark.integration, pytest.mark.timeout(1500)]

SMOKE = "pipelines/configs/smoke.yaml"
TRAIN = [
    "crest.generations=1",
    "resources.train.workers=2",
    "train.steps=100",
    "train.checkpoint_every=20",
    "train.report_every=20",
]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# Two generations, labeling on 2 workers (its task and an actor the run keeps beside the 2 Train workers in
# the 4 CPUs): after the kill, a kept actor on the 2 CPUs left holds one that Ray Train's new worker group
# waits for, forever, unless the executor lets it go (KeptActors.refit).
KEPT_ACTORS = ("crest.generations=2", "resources.pseudo_label.workers=2")


def job_status(stack: Stack, run_id: str, store: str) -> str:
    return stack.relay("status", run_id, "--address", stack.cluster.dashboard, store=store).stdout.strip()


@pytest.mark.parametrize("extra", [(), KEPT_ACTORS], ids=["train-only", "beside-kept-labeling-actors"])
def test_a_killed_node_during_data_parallel_training_resumes_from_the_checkpoint(
    stack: Stack, extra: tuple[str, ...]
) -> None:
    stack.heal()
    store, run_id = stack.store("train-loss"), f"train-loss-{uuid.uuid4().hex[:6]}"
    submitted = stack.relay(
        "submit", SMOKE, *layered(TRAIN, extra), "--run-id", run_id, "--address", stack.cluster.dashboard, store=store
    )
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    fingerprint = wait_for(
        lambda: (
            stage_state(stack, store, run_id, "g00/train").get("state") == "running"
            and stage_state(stack, store, run_id, "g00/train")["fingerprint"]
        ),
        600,
        "g00/train to start",
    )
    ray_job = stack.ray_job_id(run_id)
    workers = wait_for_actors(stack.cluster.dashboard, stack.env, "RayTrainWorker", 600, count=2, job_id=ray_job)
    # The node that really runs a worker's process (its process tree, not Ray's bookkeeping), and its Ray id.
    victim = stack.node_running(workers[0]["pid"])
    victim_id = query(stack.cluster.dashboard, stack.env).node_of(victim)
    snapshot = f"ray_train/{fingerprint[:16]}-g00_train/checkpoint_manager_snapshot.json"
    wait_for(
        lambda: (read_json(stack, store, snapshot) or {}).get("latest_checkpoint_result"),
        600,
        "Ray Train to register a checkpoint",
        poll_s=0.2,
    )
    killed = stack.cluster.nodes[victim].kill_raylet()  # at once: the stage is still far from its last step
    state = query(stack.cluster.dashboard, stack.env)
    status = wait_for(lambda: (s := job_status(stack, run_id, store)) in TERMINAL and s, 900, f"{run_id} to end")
    logs = stack.relay("logs", run_id, "--address", stack.cluster.dashboard, store=store).stdout
    assert status == "SUCCEEDED", logs[-5000:]
    metrics = manifests(stack, store)["g00/train"]["metrics"]
    entry = stage_state(stack, store, run_id, "g00/train")
    print(
        f"\nkilled {victim}'s raylet (pid {killed}) under {len(workers)} Train worker(s); g00/train resumed at step "
        f"{metrics['resumed_from_step']:.0f} of {metrics['steps']:.0f} on {state.resource_of(entry['node'])}"
    )
    assert metrics["resumed_from_step"] >= 20, "resumed from a checkpoint, not from step 0"
    assert metrics["steps"] == 100 and metrics["workers"] == 2
    assert entry["node"] != victim_id, "rank 0 finished on the surviving node"
    assert entry["attempts"] == 1, "Ray Train restarted the workers inside the stage's one attempt"
    if extra:
        assert "labeling actors: kept for the run" in logs and "the cluster shrank" in logs, logs[-5000:]
    stack.heal()


def drive(stack: Stack, store: str, run_id: str, *extra: str) -> subprocess.Popen:
    """tests/cluster/driver.py joined to the cluster, in its own process (Ray reads the token mode once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.driver", stack.cluster.gcs, store, run_id, *extra],
        cwd=ROOT,
        env={**stack.env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcome(process: subprocess.Popen, timeout_s: float = 900) -> dict:
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, err[-5000:]
    return json.loads(out.strip().splitlines()[-1])


def test_a_killed_node_during_sharded_labeling_gives_the_same_table(stack: Stack, tmp_path: Path) -> None:
    stack.heal()
    store = stack.store("label-loss")
    undisturbed = outcome(drive(stack, store, "undisturbed", "--stop-after", "g00/pseudo_label"))
    markers = tmp_path / "markers"
    markers.mkdir()
    state = query(stack.cluster.dashboard, stack.env)  # before: the kill must follow the markers at once
    driver = drive(stack, store, "label-loss", "--slow", str(markers), "3.0", "--stop-after", "g00/pseudo_label")
    try:
        first = wait_for(lambda: sorted(markers.iterdir())[:1], 600, "the first labeled shard", poll_s=0.2)[0]
        victim = state.resource_of(first.name.split("-")[0])
        killed = stack.cluster.nodes[victim].kill_raylet()  # 10 shards of 3 s on 2 workers: most still to come
        shards_before = len(list(markers.iterdir()))
        disturbed = outcome(driver)
    finally:
        if driver.poll() is None:
            driver.kill()
    label = disturbed["stages"]["g00/pseudo_label"]
    before, after = undisturbed["digests"]["g00/pseudo_labels"], disturbed["digests"]["g00/pseudo_labels"]
    print(
        f"\nkilled {victim}'s raylet (pid {killed}) after {shards_before} shard(s) had started; pseudo_label ran "
        f"{label['attempts']} attempt(s); digest undisturbed {before[:12]}, after the loss {after[:12]}"
    )
    assert disturbed["status"] == undisturbed["status"] == "STOPPED"  # both at g00/pseudo_label, on purpose
    assert label["attempts"] == 2, "the kill cost the first attempt a worker; the runner retried the stage"
    assert after == before
    assert undisturbed["stages"]["g00/train"]["state"] == "succeeded"
    assert disturbed["stages"]["g00/train"]["state"] == "cached"
    stack.heal()
