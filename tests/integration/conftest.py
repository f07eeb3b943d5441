"""Fixtures shared by the integration tests: a token-protected local Ray head started with `ray start`.

The cluster runs with token authentication, the way a user meets it since Ray
2.59: `ray get-auth-token --generate` writes ~/.ray/auth_token, `ray start --head`
then turns auth on, and the client (this process) finds the same file. HOME is a
temporary folder for both, so the real ~/.ray is never touched. Teardown stops
exactly the processes the fixture started, never `ray stop`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import AUTH_VARS, free_port, processes_of_group, ray_temp_dir, stop_processes, user_env


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
    start = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
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
