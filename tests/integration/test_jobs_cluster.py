"""orchestrator.jobs against a real local Ray head (ray start --head, dashboard on).

The cluster runs with token authentication, the way a user meets it since Ray
2.59: `ray get-auth-token --generate` writes ~/.ray/auth_token, `ray start --head`
then turns auth on, and the client (this process) finds the same file. HOME is a
temporary folder for both, so the real ~/.ray is never touched.

Teardown stops exactly the processes this test started (the `ray start`
session and their descendants), never `ray stop`, which would end every Ray
instance on the machine, including other people's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from orchestrator import jobs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

VENV_BIN = Path(sys.executable).parent
MAX_SOCKET_PATH = 107  # AF_UNIX limit; Ray puts sockets under <temp>/session_<date>_<pid>/sockets/
SESSION_SUFFIX = len("/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store")
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_temp_dir(tmp_path: Path) -> Path:
    """Under tmp_path when Ray's socket paths fit, else a short folder in /tmp."""
    candidate = tmp_path / "ray"
    if len(str(candidate)) + SESSION_SUFFIX < MAX_SOCKET_PATH:
        return candidate
    return Path(f"/tmp/ray_relay_test_{os.getpid()}")


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user with the venv activated and a fresh HOME."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(
        HOME=str(home),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def processes_of_group(pgid: int) -> set[int]:
    """Every process in the `ray start` process group, plus all their descendants.

    Ray's workers call setsid, so the group alone misses them; the tree does not.
    """
    members = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) == pgid:
                members.add(int(proc.name))
        except (ProcessLookupError, PermissionError):
            continue
    tree, found, todo = children_of(), set(members), list(members)
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def stop_processes(pids: set[int], grace_s: float = 3.0) -> None:
    """SIGTERM, wait, then SIGKILL what is left (gcs_server ignores SIGTERM: seen)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A token-protected local Ray head on free ports; yields (dashboard address, HOME)."""
    root = tmp_path_factory.mktemp("jobs")
    home = root / "home"
    home.mkdir()
    env = user_env(home)
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    dashboard_port = free_port()
    command = [
        "ray", "start", "--head", "--port", str(free_port()),
        "--dashboard-port", str(dashboard_port), "--include-dashboard=true",
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--num-cpus", "2", "--temp-dir", str(ray_temp_dir(root)), "--disable-usage-stats",
    ]  # fmt: skip
    start = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = start.communicate(timeout=120)
        assert start.returncode == 0, output
        assert "Token authentication is enabled" in output, output
        yield f"http://127.0.0.1:{dashboard_port}", home
    finally:
        stop_processes(processes_of_group(start.pid))


@pytest.fixture
def as_user(ray_head, monkeypatch) -> str:
    """This process as the user who started the cluster: same HOME, no auth variables set."""
    address, home = ray_head
    monkeypatch.setenv("HOME", str(home))
    for name in AUTH_VARS:
        monkeypatch.setenv(name, "placeholder")  # so that teardown removes what jobs sets
        monkeypatch.delenv(name)
    return address


def small_working_dir(tmp_path: Path) -> str:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "note.txt").write_text("uploaded with the job\n")
    return str(folder)


def wait_until_running(address: str, job_id: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while jobs.job_status(address, job_id) == "PENDING":
        assert time.monotonic() < deadline, f"{job_id} still PENDING"
        time.sleep(0.5)


def test_submit_logs_stop_list_on_a_real_cluster(as_user, tmp_path):
    address = as_user
    assert jobs.server_auth_mode(address) == "token"
    working_dir = small_working_dir(tmp_path)

    hello = jobs.submit_entrypoint(address, "python -c \"print('hello relay')\"", working_dir, submission_id="relay-hello")
    assert hello == "relay-hello"
    assert os.environ["RAY_AUTH_MODE"] == "token", "the token file switched the client to token mode"
    assert jobs.wait_for_job(address, hello, timeout_s=180) == "SUCCEEDED"
    assert "hello relay" in jobs.job_logs(address, hello)
    assert "hello relay" in "".join(jobs.follow_logs(address, hello))

    sleeper = jobs.submit_entrypoint(address, 'python -c "import time; time.sleep(300)"', working_dir)
    wait_until_running(address, sleeper)
    assert jobs.stop_job(address, sleeper) is True
    assert jobs.wait_for_job(address, sleeper, timeout_s=120) == "STOPPED"

    with pytest.raises(jobs.JobNotFoundError, match="no job 'raysubmit_does_not_exist'"):
        jobs.job_status(address, "raysubmit_does_not_exist")
    with pytest.raises(jobs.JobsError, match="already has a job"):
        jobs.submit_entrypoint(address, "echo again", working_dir, submission_id="relay-hello")

    listed = {row["id"]: row for row in jobs.list_jobs(address)}
    assert listed[hello]["status"] == "SUCCEEDED" and "hello relay" in listed[hello]["entrypoint"]
    assert listed[sleeper]["status"] == "STOPPED" and listed[sleeper]["start_time"]


def test_gpu_request_on_a_cpu_cluster_fails_before_submitting(as_user, tmp_path):
    address = as_user
    before = len(jobs.list_jobs(address))
    with pytest.raises(jobs.InsufficientGpusError, match="has 0 GPU"):
        jobs.submit_pipeline(address, "pipelines/configs/smoke.yaml", [], small_working_dir(tmp_path), num_gpus=1)
    assert len(jobs.list_jobs(address)) == before


def test_wrong_or_missing_token_gives_the_clear_message(as_user, monkeypatch):
    address = as_user
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-cluster-token")
    with pytest.raises(jobs.AuthTokenError, match="rejected the token"):
        jobs.list_jobs(address)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(jobs.AuthTokenError, match="requires a token"):
        jobs.list_jobs(address)
