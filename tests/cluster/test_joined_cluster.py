"""`relay run --address HOST:PORT` joins a `ray start` cluster as its driver: first, and for the resume too.

A driver the cluster refuses (token auth on, no token) is told so before anything of the run is
written; a run that joined is resumed on the same cluster, which its record names. Where each
stage ran is in the run's ledger (the Ray node id), compared with the cluster's nodes.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from tests.cluster.conftest import Stack
from tests.cluster.helpers import ledger, store_keys

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(600)]

SMOKE = "pipelines/configs/smoke.yaml"


def cluster_nodes(stack: Stack) -> set[str]:
    return {node["node_id"] for node in stack.cluster.alive_nodes()}


def stage_nodes(stack: Stack, store: str, run_id: str, stages: set[str]) -> set[str]:
    """The Ray node ids the named stages of the run ran on, from its ledger."""
    entries = ledger(stack, store, run_id)["stages"]
    nodes = {entries[name]["node"] for name in stages if entries.get(name, {}).get("node")}
    assert len(nodes) >= 1, f"the ledger records where {sorted(stages)} ran: {entries}"
    return nodes


def tracked_runs(stack: Stack, run_id: str) -> list[dict]:
    """The MLflow runs of ``run_id`` on the tier's server, in any experiment (none when nothing was tracked)."""
    body = {"filter": f"tags.`relay.pipeline_run` = '{run_id}'", "max_results": 50, "view_type": "ALL"}
    experiments = requests.post(f"{stack.mlflow.url}/api/2.0/mlflow/experiments/search", json=body, timeout=30)
    ids = [e["experiment_id"] for e in experiments.json().get("experiments", [])]
    response = requests.post(
        f"{stack.mlflow.url}/api/2.0/mlflow/runs/search", json={**body, "experiment_ids": ids}, timeout=30
    )
    return response.json().get("runs", [])


def test_a_cluster_that_refuses_the_driver_is_bad_input_and_nothing_is_written(stack: Stack, tmp_path: Path) -> None:
    stack.heal()
    store, run_id = stack.store("refused"), f"refused-{uuid.uuid4().hex[:6]}"
    no_token = tmp_path / "home"  # the cluster's token lives in the stack's HOME; this user has none
    no_token.mkdir()
    done = stack.relay(
        "run", SMOKE, "--run-id", run_id, "--address", stack.cluster.gcs, store=store, HOME=str(no_token)
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"could not join the Ray cluster at {stack.cluster.gcs}" in done.stderr
    assert "RAY_AUTH_TOKEN" in done.stderr
    assert store_keys(stack, store) == [], "no run record, no stage output"
    assert tracked_runs(stack, run_id) == [], "no MLflow run"


def split_on_the_cluster(stack: Stack, name: str) -> tuple[str, str]:
    """(store, run id) of a run that joined the cluster with --address and stopped after data/split."""
    stack.heal()
    store, run_id = stack.store(name), f"{name}-{uuid.uuid4().hex[:6]}"
    first = stack.relay(
        "run", SMOKE, "run.num_cpus=1", "--stop-after", "data/split", "--run-id", run_id,
        "--address", stack.cluster.gcs, store=store,
    )  # fmt: skip
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return store, run_id


def statuses(stack: Stack, run_id: str) -> dict[str, str]:
    """MLflow run id -> status, of every MLflow run of ``run_id``."""
    return {run["info"]["run_id"]: run["info"]["status"] for run in tracked_runs(stack, run_id)}


def test_a_resume_the_cluster_refuses_is_bad_input_and_leaves_the_run_as_it_was(stack: Stack, tmp_path: Path) -> None:
    store, run_id = split_on_the_cluster(stack, "refused-resume")
    ledger_before, tracked_before = ledger(stack, store, run_id), statuses(stack, run_id)
    no_token = tmp_path / "home"
    no_token.mkdir()
    refused = stack.relay("resume", run_id, "--address", stack.cluster.gcs, store=store, HOME=str(no_token))
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert f"could not join the Ray cluster at {stack.cluster.gcs}" in refused.stderr
    assert ledger(stack, store, run_id) == ledger_before
    assert statuses(stack, run_id) == tracked_before, "the MLflow runs were not reopened"


def test_relay_resume_joins_the_cluster_the_run_joined(stack: Stack) -> None:
    store, run_id = split_on_the_cluster(stack, "joined")
    assert stage_nodes(stack, store, run_id, {"data/split"}) <= cluster_nodes(stack)

    resumed = stack.relay("resume", run_id, "--stop-after", "g00/train", store=store)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert stage_nodes(stack, store, run_id, {"g00/train"}) <= cluster_nodes(stack)
