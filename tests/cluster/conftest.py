"""The cluster tier's one stack: S3 (moto), an MLflow server, a head and two worker nodes.

Started once for the tier (its CI time is mostly Ray and Python start-up) and stopped after
its last test (package scope: the other tiers do not run beside an idle cluster), also when a
test fails. Tests that kill nodes or the head leave the stack whole again
(``Stack.heal``), so the order of the tests does not matter. Every test writes to its own
store prefix, so no test sees another's cached stages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import requests

from tests.cluster.cluster import (
    BUCKET,
    MLFLOW_BUCKET,
    RayCluster,
    Service,
    cluster_env,
    start_cluster,
    start_service,
    wait_for,
)
from tests.integration.cluster import VENV_BIN, free_port

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("node_a", "node_b")


@dataclass
class Stack:
    """Everything a cluster test talks to, and the environment of the user's machine ("the laptop")."""

    root: Path
    env: dict[str, str]
    s3: Service
    mlflow: Service
    cluster: RayCluster

    def store(self, name: str) -> str:
        """A fresh store prefix for one test: s3://relay/<name>-<random>."""
        return f"s3://{BUCKET}/{name}-{uuid.uuid4().hex[:6]}"

    def laptop(self, store: str, **extra: str) -> dict[str, str]:
        """The user's shell: S3 credentials, the store and the MLflow server in the environment."""
        return {**self.env, "RELAY_ARTIFACT_URI": store, "MLFLOW_TRACKING_URI": self.mlflow.url, **extra}

    def relay(self, *args: str, store: str, timeout_s: float = 600, **extra: str) -> subprocess.CompletedProcess:
        """The real CLI in a fresh process, from the repository root, as the user who started the cluster."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            cwd=ROOT,
            env=self.laptop(store, **extra),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def fs(self) -> pafs.S3FileSystem:
        """The S3 server as pyarrow sees it from the test process."""
        return pafs.S3FileSystem(
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            endpoint_override=self.s3.url,
            scheme="http",
        )

    def node_running(self, pid: int) -> str:
        """The name of the node whose processes include ``pid`` (from the process tree, not Ray's bookkeeping)."""
        found = [name for name, node in self.cluster.nodes.items() if pid in node.refresh()]
        assert len(found) == 1, f"pid {pid} runs on {found or 'none'} of {sorted(self.cluster.nodes)}"
        return found[0]

    def ray_job_id(self, run_id: str) -> str:
        """The Ray job id (what tasks and actors carry) of the submitted run ``run_id`` (its submission id)."""
        url = f"{self.cluster.dashboard}/api/jobs/{run_id}"
        return wait_for(
            lambda: requests.get(url, headers=self.cluster.headers(), timeout=30).json().get("job_id"),
            300,
            f"{run_id} to get a Ray job id",
        )

    def heal(self) -> None:
        """Start whatever worker node is missing (a test killed it), so the next test finds the whole cluster."""
        alive = self.cluster.alive_names()
        for name in WORKERS:
            if name not in alive or not self.cluster.nodes[name].raylet_alive():
                self.cluster.nodes.pop(name).stop()
                self.cluster.start_worker(name)
        self.cluster.wait_until_nodes(1 + len(WORKERS))

    def new_cluster(self) -> RayCluster:
        """Stop the current cluster's processes and start a new head and workers (after a head loss)."""
        self.cluster.stop()
        self.cluster = start_cluster(self.env, self.cluster.temp_dir, WORKERS)
        return self.cluster


def make_buckets(endpoint: str) -> None:
    """The store's and MLflow's buckets on the fresh S3 server (pyarrow: no boto3 needed)."""
    fs = pafs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        endpoint_override=endpoint,
        scheme="http",
        allow_bucket_creation=True,
    )
    for bucket in (BUCKET, MLFLOW_BUCKET):
        fs.create_dir(bucket)


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cluster")
    home = root / "home"
    home.mkdir()
    s3_url = f"http://127.0.0.1:{free_port()}"
    env = cluster_env(home, s3_url)
    env = {k: v for k, v in env.items() if not k.startswith(("RELAY_", "MLFLOW_TRACKING"))}
    services: list[Service] = []
    current: Stack | None = None
    # Short, because Ray's socket paths under it must stay within 107 bytes; removed at the end.
    # Named <base>/ray, so that RAY_TMPDIR=<base> makes it Ray's default temp dir (test_local_ray).
    ray_base = Path(tempfile.mkdtemp(prefix="relay-"))
    ray_temp = ray_base / "ray"
    try:
        subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
        port = s3_url.rsplit(":", 1)[1]
        services.append(
            start_service("s3", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", port], env, s3_url, root, "/")
        )
        make_buckets(s3_url)
        mlflow_url = f"http://127.0.0.1:{free_port()}"
        mlflow_command = [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", mlflow_url.rsplit(":", 1)[1],
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts", "--workers", "1",
        ]  # fmt: skip
        mlflow_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        services.append(start_service("mlflow", mlflow_command, mlflow_env, mlflow_url, root, "/health"))
        cluster = start_cluster(env, ray_temp, WORKERS)
        current = Stack(root, env, services[0], services[1], cluster)
        yield current
    finally:
        if current is not None:
            current.cluster.stop()
        for service in reversed(services):
            service.stop()
        if os.environ.get("RELAY_KEEP_CLUSTER_LOGS"):
            print(f"\ncluster tier logs under {root} and {ray_temp}")
        else:
            shutil.rmtree(ray_base, ignore_errors=True)


@pytest.fixture
def as_user(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process talks to the cluster's Jobs server with the cluster's token (orchestrator.jobs in-process)."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", (Path(stack.env["HOME"]) / ".ray" / "auth_token").read_text().strip())
    return stack.cluster.dashboard
