"""A real multi-node Ray cluster on one machine, an S3 server and an MLflow server, for the cluster tier.

Each Ray node is its own `ray start` process group (a head with no CPUs, and worker nodes with
CPUs and a custom resource each, so placement can be forced and checked); the S3 API is moto's
standalone server (as in Ray's own S3 tests); MLflow is `mlflow server` on 127.0.0.1 with its
artifacts in that S3. Every process is stopped by its process group and tree, never `ray stop`
(tests/integration/cluster.py): other people's Ray instances on the machine are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.integration.cluster import (
    VENV_BIN,
    alive,
    free_port,
    processes_of_group,
    ray_temp_dir,
    stop_processes,
    user_env,
    wait_for,
)

BUCKET = "relay"
MLFLOW_BUCKET = "mlflow"
NODE_CPUS = 2
CUSTOM_AMOUNT = 100  # per node: enough that every stage or actor pinned there fits
OBJECT_STORE_BYTES = 100 * 1024 * 1024
START_ATTEMPTS = 3
STARTING_NICENESS = -20
# The head notices a dead node within ~3 s instead of ~30 s (Ray's own fault tests shorten these too).
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "4"}  # fmt: skip


def _starting_priority() -> None:
    """A node's processes start ahead of the machine's other work (then drop back: ``_normal_priority``).

    Why: the raylet gives its dashboard agent a fixed ~15 s to start (not configurable in Ray
    2.60) and aborts otherwise; on two cores shared with other jobs the agent's imports took
    longer (seen: 7-9 s of wall time for 2 s of CPU, three failed starts in a row). With the
    kernel's autogroups a process's nice value counts only inside its session, so the new
    session's autogroup gets the priority. Without the permission to raise it, start as is.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(STARTING_NICENESS))
    with contextlib.suppress(OSError):
        os.nice(STARTING_NICENESS)


def _normal_priority(pids: set[int]) -> None:
    """Back to the default priority once the node is up: training never runs ahead of anyone."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text("0")
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 0)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.exceptions.RequestException:
        return False


@dataclass
class Service:
    """One server process (moto, MLflow) in its own process group, with its log file."""

    name: str
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        stop_processes(processes_of_group(self.process.pid) | {self.process.pid})


def start_service(name: str, command: list[str], env: dict[str, str], url: str, logs: Path, ready: str) -> Service:
    """Start ``command`` and wait until ``url + ready`` answers (or fail with its log)."""
    log = logs / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    service = Service(name, process, url, log)
    try:
        wait_for(lambda: process.poll() is not None or _answers(url + ready), 120, f"{name} to answer")
        assert process.poll() is None, f"{name} exited: {log.read_text()[-3000:]}"
    except BaseException:
        service.stop()
        raise
    return service


@dataclass
class RayNode:
    """One `ray start` process group: the head or a worker node with its custom resource."""

    name: str
    start_pid: int
    resource: str | None
    pids: set[int] = field(default_factory=set)

    def refresh(self) -> set[int]:
        """Remember every process of the node now (before a kill breaks the process tree)."""
        self.pids |= processes_of_group(self.start_pid)
        return self.pids

    def raylet_pid(self) -> int:
        for pid in sorted(self.refresh()):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if command.endswith(b"/raylet"):
                return pid
        raise AssertionError(f"no raylet among the processes of node {self.name}: {sorted(self.pids)}")

    def raylet_alive(self) -> bool:
        try:
            return alive(self.raylet_pid())
        except AssertionError:
            return False

    def kill_raylet(self) -> int:
        """SIGKILL the node's raylet (Ray then loses the node and every worker on it); returns its pid."""
        pid = self.raylet_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        stop_processes(self.refresh())


@dataclass
class RayCluster:
    """A head (no CPUs: it holds drivers and coordinators only) and worker nodes, each a `ray start` group."""

    env: dict[str, str]
    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    nodes: dict[str, RayNode] = field(default_factory=dict)

    def node_temp_dir(self, name: str) -> Path:
        """The head's temp dir is ``temp_dir``; each worker node has its own folder, as on its own machine.

        Why: nodes sharing one temp dir share one session folder, and each node's runtime-env
        agent unpacks a job's working dir into the same ``_ray_pkg_*`` folder there, replacing
        it while another node's driver reads it (seen: a resumed job hashed an empty code folder).
        """
        return self.temp_dir if name == "head" else self.temp_dir / name

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _start(self, name: str, arguments: list[str], resource: str | None, env: dict[str, str]) -> RayNode:
        """`ray start` the node; a node whose agent still started too slowly for its raylet is started again."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self._start_once(name, arguments, resource, env)
            except AssertionError:
                self.nodes.pop(name).stop()
                if attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, name: str, arguments: list[str], resource: str | None, env: dict[str, str]) -> RayNode:
        resources = {resource: CUSTOM_AMOUNT} if resource else {}
        command = [
            str(VENV_BIN / "ray"), "start", *arguments,
            "--resources", json.dumps(resources), "--temp-dir", str(self.node_temp_dir(name)),
            "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats",
            "--min-worker-port", "0", "--max-worker-port", "0",
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
        ]  # fmt: skip
        start = subprocess.Popen(
            command,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_starting_priority,
        )
        node = RayNode(name, start.pid, resource)
        self.nodes[name] = node
        try:
            output, _ = start.communicate(timeout=240)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"ray start of {name} did not return in 240 s") from exc
        finally:
            _normal_priority(node.refresh())
        assert start.returncode == 0, f"ray start of {name} failed:\n{output[-4000:]}"
        return node

    def start_head(self) -> RayNode:
        arguments = [
            "--head", "--port", str(self.gcs_port), "--num-cpus", "0",
            "--dashboard-port", str(self.dashboard_port), "--include-dashboard=true",
            "--dashboard-host", "127.0.0.1", "--ray-client-server-port", str(free_port()),
        ]  # fmt: skip
        return self._start("head", arguments, "head", {**self.env, **FAST_NODE_DEATH})

    def start_worker(self, name: str) -> RayNode:
        arguments = ["--address", self.gcs, "--num-cpus", str(NODE_CPUS)]
        return self._start(name, arguments, name, self.env)

    def alive_nodes(self) -> list[dict[str, Any]]:
        """The nodes the head reports alive (the state API's REST endpoint behind `ray list nodes`)."""
        response = requests.get(f"{self.dashboard}/api/v0/nodes?limit=100&detail=1", headers=self.headers(), timeout=30)
        nodes = response.json()["data"]["result"]["result"]
        return [node for node in nodes if node["state"] == "ALIVE"]

    def alive_names(self) -> set[str]:
        """The custom resources (head, node_a, ...) of the alive nodes: which of our nodes are up."""
        return {name for node in self.alive_nodes() for name in node["resources_total"] if name in self.nodes}

    def headers(self) -> dict[str, str]:
        token = (Path(self.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def wait_until_nodes(self, count: int, timeout_s: float = 120) -> None:
        wait_for(lambda: len(self.alive_nodes()) == count, timeout_s, f"{count} alive Ray nodes")

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.stop()


def start_cluster(env: dict[str, str], temp_dir: Path, workers: tuple[str, ...]) -> RayCluster:
    """A head and the named worker nodes (the name is also the node's custom resource); stopped on failure."""
    cluster = RayCluster(env, temp_dir, free_port(), free_port())
    try:
        cluster.start_head()
        for name in workers:
            cluster.start_worker(name)
        cluster.wait_until_nodes(1 + len(workers))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def token_head(root: Path) -> Iterator[RayCluster]:
    """A real `ray start --head` with token auth (its token generated in its own HOME under ``root``), its own
    ports and temp dir; stopped when the block ends."""
    home = root / "head-home"
    home.mkdir()
    env = {**user_env(home), "RAY_AUTH_MODE": "token"}
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    cluster = RayCluster(env, ray_temp_dir(root), free_port(), free_port())
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.stop()


def cluster_env(home: Path, s3_endpoint: str) -> dict[str, str]:
    """A user's environment with S3 credentials and the endpoint that pyarrow, boto3 and MLflow all read.

    Ray's agents and raylets get more time to start: three nodes starting on two busy
    cores took longer than Ray's default (seen: a worker node's raylet gave up on its agent).
    """
    env = user_env(home)
    env.update(
        RAY_agent_register_timeout_ms="180000",
        RAY_raylet_start_wait_time_s="60",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3_endpoint,
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint,
        RAY_AUTH_MODE="token",
        PYTHONUNBUFFERED="1",
    )
    return env
