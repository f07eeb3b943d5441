"""`relay run` beside a `ray start` cluster: its own local Ray without an address, the cluster with one.

A bare ``ray.init()`` joins whatever cluster ``<Ray's temp dir>/ray_current_cluster`` names. With
RAY_TMPDIR pointing at the tier's cluster, that file names a live `ray start` head; in a fresh
temp dir it names a head that died without `ray stop`. Where each stage ran is in the run's
ledger (the Ray node id), so "its own instance" is checked as "on none of the cluster's nodes".
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Stack
from tests.cluster.helpers import ledger
from tests.integration.cluster import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(600)]

SMOKE = "pipelines/configs/smoke.yaml"
FIRST_STAGE = ["run.num_cpus=1", "--stop-after", "data/split"]  # num_cpus: what joining a cluster used to reject


def run_nodes(stack: Stack, *args: str, **env: str) -> set[str]:
    """`relay run` of the first stage only; the Ray node ids its stages ran on."""
    store, run_id = stack.store("local-ray"), f"local-ray-{uuid.uuid4().hex[:6]}"
    done = stack.relay("run", SMOKE, *FIRST_STAGE, "--run-id", run_id, *args, store=store, **env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    nodes = {entry["node"] for entry in ledger(stack, store, run_id)["stages"].values() if entry.get("node")}
    assert nodes, "the ledger records where each stage ran"
    return nodes


def cluster_nodes(stack: Stack) -> set[str]:
    return {node["node_id"] for node in stack.cluster.alive_nodes()}


@pytest.fixture
def stale_temp_dir() -> Iterator[Path]:
    """A Ray temp dir whose ray_current_cluster names a head that is gone (nothing listens there)."""
    base = Path(tempfile.mkdtemp(prefix="relay-stale-"))  # short: Ray's socket paths must fit 107 bytes
    (base / "ray").mkdir()
    (base / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_without_an_address_relay_run_starts_its_own_ray_beside_a_live_cluster(stack: Stack) -> None:
    stack.heal()
    named = (stack.cluster.temp_dir / "ray_current_cluster").read_text().strip()  # NODE-IP:PORT of the live head
    assert named.endswith(f":{stack.cluster.gcs_port}"), named
    nodes = run_nodes(stack, RAY_TMPDIR=str(stack.cluster.temp_dir.parent))
    assert not nodes & cluster_nodes(stack)


def test_without_an_address_a_stale_cluster_file_is_ignored(stack: Stack, stale_temp_dir: Path) -> None:
    nodes = run_nodes(stack, RAY_TMPDIR=str(stale_temp_dir))
    assert not nodes & cluster_nodes(stack)


def test_a_data_parallel_stage_beside_a_live_cluster_asks_its_own_ray(stack: Stack) -> None:
    """Ray Train's PlacementGroupCleaner asks the state API, without an address, whether the trainer lives.

    With the tier's cluster on the same machine, a worker of the run's own Ray found two instances and the
    cleaner died on "Found multiple active Ray instances" (a traceback in the run's output, and no cleaner
    for the run's worker reservation). The run's own instance names its dashboard to its workers.
    """
    stack.heal()
    store, run_id = stack.store("local-ray"), f"local-ray-dp-{uuid.uuid4().hex[:6]}"
    overrides = ["run.num_cpus=2", "resources.train.workers=2", "crest.generations=1", "train.steps=10"]
    done = stack.relay("run", SMOKE, *overrides, "--stop-after", "g00/train", "--run-id", run_id, store=store)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    trained = ledger(stack, store, run_id)["stages"]["g00/train"]
    assert trained["state"] == "succeeded" and trained["metrics"]["workers"] == 2, trained
    assert "multiple active Ray instances" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_with_an_address_relay_run_joins_the_cluster(stack: Stack) -> None:
    stack.heal()
    assert run_nodes(stack, "--address", stack.cluster.gcs) <= cluster_nodes(stack)
