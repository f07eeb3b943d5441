"""`relay run --address HOST:PORT` tells, before ray.init, a server that is not Ray's GCS and a refused token.

Before, a port that answered TCP passed the check: ray.init then retried "Failed to connect to
GCS" without end against a plain HTTP server (deaf to Ctrl-C), and against a head with another
token printed Ray's "Failed to get cluster ID" for 20 s before a vague "could not join". Each case
is the real CLI in its own process, with a timeout, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from orchestrator.cli.run.run_locations import RAY_JOB_ENV
from tests.cluster.cluster import RayCluster, token_head
from tests.integration.cluster import free_port, processes_of_group, stop_processes, user_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "pipelines/configs/smoke.yaml"
JOIN_TIMEOUT_S = 120  # the refusal comes in seconds; the old code never ended


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.exceptions.RequestException:
        return False


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A workspace path outside the temporary folders (a cluster run refuses /tmp ones before it joins),
    never created by a refused run; removed after the test in case it was."""
    path = ROOT / "test-artifacts" / f"join-probe-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a plain HTTP server (`python -m http.server`), stopped after the test."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: server.poll() is not None or _answers(f"http://127.0.0.1:{port}/"), 60, "the HTTP server")
        assert server.poll() is None, "the HTTP server exited"
        yield f"127.0.0.1:{port}"
    finally:
        stop_processes(processes_of_group(server.pid) | {server.pid})


@pytest.fixture
def head(tmp_path: Path) -> Iterator[RayCluster]:
    """A real `ray start --head` with token auth, its own ports, HOME and temp dir; stopped after the test."""
    with token_head(tmp_path) as cluster:
        yield cluster


def relay_run(address: str, workspace: Path, home: Path, **extra: str) -> subprocess.CompletedProcess:
    """`relay run SMOKE --address ADDRESS` as a user with a fresh HOME, writing (if ever) to ``workspace``."""
    env = {**user_env(home), "RELAY_WORKSPACE": str(workspace), **extra}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", SMOKE, "--address", address],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT_S,
    )


def test_an_http_server_given_as_the_cluster_is_refused_at_once(
    http_server: str, workspace: Path, tmp_path: Path
) -> None:
    done = relay_run(http_server, workspace, tmp_path)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{http_server} is not a Ray cluster's GCS address" in done.stderr, done.stderr[-3000:]
    assert "HOST:6379" in done.stderr and "relay submit" in done.stderr
    assert done.stderr.count("relay: ") == 1, done.stderr[-3000:]
    assert not workspace.exists(), "nothing written"


def test_a_wrong_token_is_named_as_rejected_without_rays_retries(
    head: RayCluster, workspace: Path, tmp_path: Path
) -> None:
    done = relay_run(head.gcs, workspace, tmp_path, RAY_AUTH_TOKEN="wrong", RAY_AUTH_MODE="token")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"could not join the Ray cluster at {head.gcs}: it rejected the token" in done.stderr, done.stderr[-3000:]
    assert "Failed to get cluster ID" not in done.stderr, "refused before ray.init retried"
    assert not workspace.exists(), "nothing written"


def test_the_right_token_passes_the_probe(head: RayCluster) -> None:
    """The probe lets the real GCS through (with the head's token), and only names what is wrong otherwise."""
    from orchestrator.cli.run.cluster_join import ray_cluster_problem

    token = (Path(head.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN", token)
        assert ray_cluster_problem(head.gcs, "--address") is None
        patch.delenv("RAY_AUTH_TOKEN")
        patch.setenv("RAY_AUTH_MODE", "disabled")
        assert "it requires a token and none was found" in (ray_cluster_problem(head.gcs, "--address") or "")


def test_joining_a_cluster_refuses_stores_in_a_temporary_folder(head: RayCluster, tmp_path: Path) -> None:
    """Stages on the cluster's other nodes write to the store too: a node-local /tmp would split the run.

    A real GCS at the address (a bare listening socket no longer passes for one) and a node with CPUs (the head
    has none), so the store is what is refused.
    """
    head.start_worker("w1")
    token = (Path(head.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
    workspace = tmp_path / "ws"  # pytest's tmp_path is under the temporary folder
    done = relay_run(head.gcs, workspace, tmp_path, RAY_AUTH_TOKEN=token)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "run.artifact_uri:" in done.stderr and "a temporary folder" in done.stderr, done.stderr[-3000:]
    assert "RELAY_WORKSPACE" in done.stderr
    assert not workspace.exists(), "nothing written"


JOINER = """
import sys
from orchestrator.engine.ray_executor import RayExecutor

print("JOINING", flush=True)
RayExecutor(address=sys.argv[1])
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_a_join_stuck_in_rays_client(http_server: str, tmp_path: Path, sig: int, code: int) -> None:
    """ray.init against a server that never answers as a GCS (the CLI's probe bypassed) is ended by one Ctrl-C
    (130) or SIGTERM (143: timeout, systemd, a batch scheduler).

    Before, Ray's C++ client retried for good and Python's handlers never ran: only SIGKILL ended it;
    then SIGTERM ended it as Ctrl-C did, 130.
    """
    output = tmp_path / "join.log"
    with output.open("w") as out:
        joiner = subprocess.Popen(
            [sys.executable, "-c", JOINER, http_server],
            cwd=ROOT,
            env=user_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "Connecting to existing Ray cluster" in output.read_text(), 120, "ray.init to start joining")
        joiner.send_signal(sig)
        assert joiner.wait(timeout=JOIN_TIMEOUT_S) == code, output.read_text()[-3000:]
        assert f"interrupted while joining the Ray cluster at {http_server}" in output.read_text()
    finally:
        stop_processes(processes_of_group(joiner.pid) | {joiner.pid})


def test_a_resume_on_its_recorded_cluster_says_how_to_run_elsewhere(head: RayCluster, tmp_path: Path, caplog) -> None:
    """`relay resume RUN` (no --address) read "(--address names another)", as if the user had passed one."""
    from orchestrator.cli.run.resume_checks import resume_address
    from orchestrator.cli.run.run_record import save_run_record
    from orchestrator.config import PipelineConfig, RunSettings
    from orchestrator.engine.artifacts import ArtifactStore

    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = PipelineConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path)))
    save_run_record(store, "r1", config, "toy.yaml", [], ray_address=head.gcs)
    token = (Path(head.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
    caplog.set_level(logging.INFO, logger="relay")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN", token)
        for name in ("RAY_ADDRESS", RAY_JOB_ENV):
            patch.delenv(name, raising=False)
        assert resume_address(None, store, "r1") == head.gcs
    said = f"run r1 joined the Ray cluster at {head.gcs}: resuming there (pass --address HOST:PORT or --address local"
    assert said in caplog.text, caplog.text


JOIN_AFTER_THE_PROBE = """
import sys
from orchestrator.cli.run.cluster_join import ray_cluster_problem
from orchestrator.jobs import token_mode_for_joining
assert ray_cluster_problem(sys.argv[1], "--address") is None  # what check_cluster does before Ray is imported
token_mode_for_joining()
import ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print("joined", ray.cluster_resources().get("node:__internal_head__"))
ray.shutdown()
"""


def test_the_token_in_ray_auth_token_alone_joins(head: RayCluster, tmp_path: Path) -> None:
    """RAY_AUTH_TOKEN, as Relay's own advice says to set it, without RAY_AUTH_MODE: Relay's probe, then ray.init.

    Ray's client sends a token to a given address only in token mode, so the probe passed and
    ray.init then printed "Failed to get cluster ID ... InvalidAuthToken" for 20 s and gave up.
    """
    token = (Path(head.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
    env = {**user_env(tmp_path), "RAY_AUTH_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-c", JOIN_AFTER_THE_PROBE, head.gcs],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("joined 1.0"), done.stdout[-3000:]
    assert "InvalidAuthToken" not in done.stderr
