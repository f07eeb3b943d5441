"""`relay submit` and `relay run --address` refuse a stage whose one worker no node can hold (the cluster has enough in total).

Two worker nodes of 1 CPU each (and a 0-CPU head): `resources.train.num_cpus=2` passed the check
against the cluster's 2 CPUs, and the job waited forever ("No available node types can fulfill
resource request {'CPU': 2.0}"). A real `ray start` cluster of its own (ports, HOME, temp dir),
stopped after the test; the CLI runs in its own process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.cluster import cluster as cluster_module
from tests.cluster.cluster import RayCluster, start_cluster
from tests.integration.cluster import durable_folder, ray_temp_dir, user_env

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "pipelines/configs/smoke.yaml"


@pytest.fixture
def one_cpu_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RayCluster]:
    """A head with no CPUs and two worker nodes of 1 CPU each, with token auth; stopped after the test."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**user_env(home), "RAY_AUTH_MODE": "token", "RAY_agent_register_timeout_ms": "180000"}
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    monkeypatch.setattr(cluster_module, "NODE_CPUS", 1)
    cluster = start_cluster(env, ray_temp_dir(tmp_path), ("w1", "w2"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A workspace outside the temporary folders (submit refuses those first); never created by a refusal."""
    with durable_folder("worker-fit") as path:
        yield path


def test_a_worker_no_node_can_hold_is_refused_and_nothing_is_submitted(
    one_cpu_nodes: RayCluster, workspace: Path
) -> None:
    cluster = one_cpu_nodes
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "submit", SMOKE, "resources.train.num_cpus=2",
         "--address", cluster.dashboard],
        cwd=ROOT,
        env={**cluster.env, "RELAY_WORKSPACE": str(workspace)},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    message = done.stderr
    assert "g00/train, g01/train: one worker asks for 2 CPU" in message, message[-3000:]
    assert "the largest has 1 CPU" in message and "resources.train.num_cpus" in message
    assert message.count("relay: ") == 1, message[-3000:]
    listed = requests.get(f"{cluster.dashboard}/api/jobs/", headers=cluster.headers(), timeout=30).json()
    assert listed == [], "nothing submitted"
    assert not workspace.exists(), "nothing written"


def test_relay_run_joining_the_cluster_refuses_it_too(one_cpu_nodes: RayCluster, workspace: Path) -> None:
    """The same check from the GCS (GetAllNodeInfo) before ray.init; before, the joined run waited forever."""
    cluster = one_cpu_nodes
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            SMOKE,
            "resources.train.num_cpus=2",
            "--address",
            cluster.gcs,
        ],
        cwd=ROOT,
        env={**cluster.env, "RELAY_WORKSPACE": str(workspace)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "g00/train, g01/train: one worker asks for 2 CPU" in done.stderr, done.stderr[-3000:]
    assert "the largest has 1 CPU" in done.stderr and "--skip-resource-check" in done.stderr
    assert not workspace.exists(), "nothing written"
