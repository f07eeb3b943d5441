"""A CReST run submitted to a real multi-node cluster: placed on the worker nodes, stored only in S3, tracked in MLflow.

The stack (conftest.py): a head with no CPUs, worker nodes `node_a` and `node_b` (2 CPUs and a
custom resource each), moto's S3 server and an MLflow server with its artifacts in that S3. The
user's shell holds RELAY_ARTIFACT_URI=s3://... and MLFLOW_TRACKING_URI=http://...; `relay submit`
hands both to the job. Train stages are pinned to node_a, labeling (its task and actor) to node_b, through
`resources.<stage>.custom`. The dataset is Parquet shards in the same S3 store, so the worker
nodes read their rows from object storage too.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from orchestrator import jobs
from tests.cluster.cluster import wait_for
from tests.cluster.conftest import ROOT, Stack
from tests.cluster.helpers import (
    ledger,
    local_copies,
    manifests,
    mlflow_runs,
    output_digests,
    run_name,
    store_keys,
)
from tests.cluster.state import query

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(1500)]

SMOKE = "pipelines/configs/smoke.yaml"
PLACED = [
    "train.steps=20",
    "resources.train.custom={node_a: 1}",
    "resources.pseudo_label.workers=2",
    "resources.pseudo_label.custom={node_b: 1}",
    "label.shard_size=64",
]
STAGES = 7  # smoke.yaml: data/split, g00 train/evaluate/pseudo_label/rebalance, g01 train/evaluate


def ray_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """Ray's own CLI, as the user who started the cluster."""
    return subprocess.run(["ray", *args], env=stack.env, capture_output=True, text=True, timeout=300)


def test_a_submitted_crest_run_is_placed_stored_tracked_and_named(stack: Stack, as_user: str) -> None:
    stack.heal()
    address, store, run_id = as_user, stack.store("scale-out"), f"scale-out-{uuid.uuid4().hex[:6]}"
    copies_before = set(Path(tempfile.gettempdir()).glob("relay-copies-*"))  # other runs' leftovers: not this run's
    # The data too lives only in S3: digits imported as Parquet shards from the laptop, read by the worker nodes.
    data_uri = f"{store}/datasets/digits"
    imported = stack.relay("data", "import", "digits", data_uri, store=store)
    assert imported.returncode == 0, imported.stderr[-3000:]
    info = stack.relay("data", "info", data_uri, "--verify", store=store)
    assert info.returncode == 0 and "every image decodes" in info.stdout, info.stderr[-2000:]
    sharded = ["data.name=parquet", f"data.uri={data_uri}"]
    started = time.monotonic()
    done = stack.relay(
        "submit", SMOKE, *PLACED, *sharded, "--run-id", run_id, "--address", address, "--wait", store=store
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    print(f"\nsubmitted and finished in {time.monotonic() - started:.0f} s")

    # One id: the job, the run record, the MLflow run name; --wait streamed the job's log.
    assert done.stdout.splitlines()[0] == run_id
    assert f"run {run_id} finished: {STAGES} executed, 0 cached" in done.stdout
    assert stack.relay("status", run_id, "--address", address, store=store).stdout.strip() == "SUCCEEDED"
    assert f"run {run_id} finished" in stack.relay("logs", run_id, "--address", address, store=store).stdout
    assert f"Job '{run_id}' succeeded" in ray_cli(stack, "job", "status", run_id, "--address", address).stdout
    job = next(row for row in jobs.list_jobs(address) if row["id"] == run_id)
    assert job["metadata"] == {  # the store it resolved: `relay status` reads the run's way on from it
        "relay.pipeline": "crest",
        "relay.name": "smoke",
        "relay.run_id": run_id,
        "relay.artifact_uri": store,
    }

    # Placement: train on node_a; labeling, its task (its first worker) and its actor's shards, on node_b.
    state = query(address, stack.env)
    head, node_a, node_b = state.node_of("head"), state.node_of("node_a"), state.node_of("node_b")
    ray_job = requests.get(f"{address}/api/jobs/{run_id}", headers=stack.cluster.headers(), timeout=30).json()["job_id"]
    assert state.task_nodes("g00/train", ray_job) == state.task_nodes("g01/train", ray_job) == {node_a}
    # Pinned stages keep no pool: g00/pseudo_label (2 workers) starts its one actor and releases it when it
    # ends. The actor may never be placed (g00/evaluate, unpinned, can hold node_b's other CPU meanwhile, and
    # the stage's task then labels every shard), so Ray lists it DEAD with no node: if placed, it is on node_b.
    workers = state.actors_named("pseudo_label pool ", ray_job)
    placed = {actor["node_id"] for actor in workers if actor["node_id"] is not None}
    assert len(workers) == 1 and placed <= {node_b}, workers
    assert all(actor["class_name"] == "_ShardWorker" for actor in workers)
    shards = [t for t in state.tasks if t["name"].startswith("g00/pseudo_label shard ") and t["job_id"] == ray_job]
    assert {task["node_id"] for task in shards if task["node_id"]} <= {node_b}, shards  # as task_nodes
    assert state.task_nodes("g00/pseudo_label", ray_job) == {node_b}, "the stage's task holds a pinned worker's place"
    assert head not in state.task_nodes("g00/pseudo_label", ray_job)
    recorded = ledger(stack, store, run_id)
    assert recorded["driver"]["job_id"] == run_id and recorded["driver"]["job_address"] == address  # for a resume
    entries = recorded["stages"]
    assert entries["g00/train"]["node"] == entries["g01/train"]["node"] == node_a
    assert entries["g00/pseudo_label"]["node"] == node_b
    assert all(entry["node"] in (node_a, node_b) for entry in entries.values())

    # Storage: every output and the run record in S3; no stage output on any local path.
    found = manifests(stack, store)
    assert len(found) == STAGES
    keys = store_keys(stack, store)
    assert {f"{store[5:]}/runs/{run_id}/{name}" for name in ("config.yaml", "command.json", "ledger.json")} <= set(keys)
    copies = set(Path(tempfile.gettempdir()).glob("relay-copies-*")) - copies_before
    roots = [stack.root, stack.cluster.temp_dir, ROOT, *copies]
    assert local_copies(roots, output_digests(found)) == []
    assert not (ROOT / "relay-workspace").exists()

    # Tracking: the MLflow server's REST API and `relay generations` (from the laptop) show both generations.
    runs = {run_name(run): run for run in mlflow_runs(stack, run_id)}
    assert {run_id, "gen-00", "gen-01", "g00/train", "g00/pseudo_label", "g01/evaluate"} <= set(runs)
    assert runs[run_id]["info"]["status"] == "FINISHED"
    table = stack.relay("generations", run_id, store=store)
    assert table.returncode == 0, table.stderr[-3000:]
    rows = [line.split()[0] for line in table.stdout.splitlines() if line[:1].isdigit()]
    assert rows == ["0", "1"], table.stdout


def test_stop_by_run_id_agrees_with_ray(stack: Stack, as_user: str) -> None:
    address, store, run_id = as_user, stack.store("stop"), f"stop-{uuid.uuid4().hex[:6]}"
    submitted = stack.relay("submit", SMOKE, "train.steps=20000", "--run-id", run_id, "--address", address, store=store)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    wait_for(lambda: jobs.job_status(address, run_id) == "RUNNING", 300, f"{run_id} to run")
    stopped = stack.relay("stop", run_id, "--address", address, store=store)
    assert stopped.returncode == 0 and "stop requested" in stopped.stdout
    wait_for(lambda: jobs.job_status(address, run_id) == "STOPPED", 120, f"{run_id} to stop")
    assert f"Job '{run_id}' was stopped" in ray_cli(stack, "job", "status", run_id, "--address", address).stdout
    assert stack.relay("status", run_id, "--address", address, store=store).stdout.strip() == "STOPPED"
