"""orchestrator.jobs without a cluster: addresses, token lookup, fast clear failures.

A tiny HTTP server stands in for the dashboard where a test needs an answer
(auth mode, cluster status); the real Jobs server is exercised in
tests/cluster/test_jobs_api.py.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from orchestrator import jobs
from orchestrator.cli import main
from orchestrator.errors import ConfigError, InputError, RelayError
from orchestrator.jobs import connection

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No Ray auth/address variables and an empty HOME; restored afterwards.

    setenv-then-delenv makes monkeypatch remember the variables as unset, so a
    variable that jobs.find_auth_token sets itself is removed again at teardown.
    """
    for name in AUTH_VARS:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_dashboard() -> Iterator[tuple[str, dict[str, Any]]]:
    """An HTTP server answering GET paths from a dict of JSON bodies (404 otherwise)."""
    routes: dict[str, Any] = {"/api/version": {"ray_version": "2.60.0"}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path.split("?")[0])
            payload = json.dumps(body).encode() if body is not None else b"not found"
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- address


def test_address_argument_wins_over_env(clean_env, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://env-host:8265")
    assert jobs.resolve_address("http://arg-host:8265/") == "http://arg-host:8265"


def test_address_from_env_and_scheme_added(clean_env, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "head.internal:8265")
    assert jobs.resolve_address(None) == "http://head.internal:8265"


def test_missing_address_says_what_to_pass(clean_env):
    with pytest.raises(jobs.JobsError) as info:
        jobs.resolve_address(None)
    assert "--address http://HOST:8265" in str(info.value)
    assert "RAY_ADDRESS" in str(info.value)
    assert isinstance(info.value, RelayError)


def test_ray_client_address_is_refused_with_the_dashboard_port(clean_env):
    with pytest.raises(jobs.JobsError, match="8265"):
        jobs.resolve_address("ray://head:10001")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://127.0.0.1:abc", "port"),
        ("ftp://127.0.0.1:21", "scheme"),
        ("file:///tmp/x", "scheme"),
        ("http://:8265", "no host"),
        ("http://a b:8265", "host name"),
        ("head.internal", "no port"),
        ("http://[::1", "IPv6"),
        ("http://[zz]:8265", "IPv6"),
    ],
)
def test_a_malformed_address_is_bad_input_naming_the_flag_and_the_form(clean_env, address, why):
    with pytest.raises(jobs.AddressError) as info:
        jobs.resolve_address(address)
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert why in message and "--address" in message and "http://HOST:8265" in message


def test_a_malformed_ray_address_variable_is_named(clean_env, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    with pytest.raises(jobs.AddressError, match="RAY_ADDRESS 'garbage'.*RAY_ADDRESS=http://HOST:8265"):
        jobs.resolve_address(None)


@pytest.mark.parametrize("address", ["http://[::1]:8265", "https://ray.example.com", "10.0.0.5:8265"])
def test_well_formed_addresses_pass(clean_env, address):
    assert jobs.resolve_address(address).startswith(("http://", "https://"))


# --------------------------------------------------------------------------- unreachable


def test_unreachable_address_fails_fast_with_the_clear_message(clean_env):
    port = free_port()  # bound then released: nothing listens there
    started = time.monotonic()
    with pytest.raises(jobs.ClusterUnreachableError) as info:
        jobs.job_status(f"http://127.0.0.1:{port}", "raysubmit_x")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"no Ray Jobs server at http://127.0.0.1:{port}" in message
    assert "ray start --head" in message and "8265" in message
    assert isinstance(info.value, InputError), "nothing answers: bad input (exit 2), nothing was sent"


def test_every_command_maps_unreachable_the_same_way(clean_env):
    address = f"127.0.0.1:{free_port()}"
    calls = [
        lambda: jobs.connect(address),
        lambda: jobs.job_logs(address, "x"),
        lambda: jobs.stop_job(address, "x"),
        lambda: jobs.list_jobs(address),
        lambda: jobs.wait_for_job(address, "x", timeout_s=1),
    ]
    for call in calls:
        with pytest.raises(jobs.ClusterUnreachableError, match="no Ray Jobs server"):
            call()


def test_a_connection_lost_after_the_probe_is_a_failure_not_bad_input():
    with pytest.raises(jobs.JobsError) as info, connection.translated_errors("http://h:8265", "job-1"):
        raise requests.exceptions.ConnectionError("reset")
    assert not isinstance(info.value, InputError)
    assert "relay status job-1" in str(info.value)


@pytest.mark.parametrize(
    ("address", "code", "text"),
    [
        ("http://127.0.0.1:99999", 2, "port must be a number from 1 to 65535"),
        ("ftp://127.0.0.1:21", 2, "http:// or https://"),
        (None, 2, "no Ray Jobs server"),  # well-formed, nothing listens
    ],
)
def test_relay_jobs_exit_codes_by_address(clean_env, capsys, address, code, text):
    address = address or f"http://127.0.0.1:{free_port()}"
    assert main(["jobs", "--address", address]) == code
    assert text in capsys.readouterr().err


def test_a_server_that_answers_with_an_error_stays_exit_1(clean_env, fake_dashboard, capsys):
    address, _ = fake_dashboard  # a Ray version, then 404 for /api/jobs/
    assert main(["jobs", "--address", address]) == 1
    assert "refused the request" in capsys.readouterr().err


# --------------------------------------------------------------------------- token


def test_no_token_anywhere_sends_no_header(clean_env):
    assert jobs.auth_headers() == {}
    assert "RAY_AUTH_MODE" not in os.environ


def test_token_file_is_used_and_enables_token_mode(clean_env):
    (clean_env / ".ray").mkdir()
    (clean_env / ".ray" / "auth_token").write_text("file-token\n")
    assert jobs.auth_headers() == {"Authorization": "Bearer file-token"}
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_token_env_wins_over_the_file(clean_env, monkeypatch):
    (clean_env / ".ray").mkdir()
    (clean_env / ".ray" / "auth_token").write_text("file-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert jobs.auth_headers() == {"Authorization": "Bearer env-token"}
    assert "RAY_AUTH_MODE" not in os.environ, "reading a token from the environment keeps this process's mode"
    jobs.token_mode_for_joining()
    assert os.environ["RAY_AUTH_MODE"] == "token", "ray.init with an address sends a token only in token mode"


def test_token_path_env_is_read(clean_env, monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert jobs.find_auth_token() == "path-token"
    jobs.token_mode_for_joining()
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_auth_mode_disabled_sends_nothing(clean_env, monkeypatch):
    (clean_env / ".ray").mkdir()
    (clean_env / ".ray" / "auth_token").write_text("file-token")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs.auth_headers() == {}


def test_explicit_token_mode_is_left_alone(clean_env, monkeypatch):
    (clean_env / ".ray").mkdir()
    (clean_env / ".ray" / "auth_token").write_text("file-token")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert jobs.find_auth_token() == "file-token"
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_token_cluster_without_a_token_names_the_variables(clean_env, fake_dashboard):
    address, routes = fake_dashboard
    routes["/api/authentication_mode"] = {"authentication_mode": "token"}
    with pytest.raises(jobs.AuthTokenError) as info:
        jobs.connect(address)
    message = str(info.value)
    assert "RAY_AUTH_TOKEN" in message and "RAY_AUTH_MODE=token" in message
    assert "ray get-auth-token" in message


def test_server_auth_mode_is_unknown_on_old_servers(clean_env, fake_dashboard):
    address, _ = fake_dashboard
    assert jobs.server_auth_mode(address) == "unknown"


# --------------------------------------------------------------------------- GPUs


def cluster_status(usage: dict[str, list[float]]) -> dict[str, Any]:
    return {"result": True, "data": {"clusterStatus": {"loadMetricsReport": {"usage": usage}}}}


def test_resource_totals_come_from_cluster_status(clean_env, fake_dashboard):
    address, routes = fake_dashboard
    usage = {"CPU": [0.0, 16.0], "GPU": [1.0, 4.0], "ssd": [0.0, 2.0], "nodeA": [0.0, 1.0]}
    routes["/api/cluster_status"] = cluster_status(usage)  # the dashboard camel-cases names: node_a -> nodeA
    assert jobs.cluster_totals(address) == {"cpu": 16.0, "gpu": 4.0, "ssd": 2.0, "nodea": 1.0}
    jobs.check_cluster_resources(address, {"GPU": 4, "CPU": 16, "ssd": 2, "node_a": 1})


@pytest.fixture
def no_report_wait(monkeypatch):
    """A cluster short for good is said so at once here, not after the wait for a report that lags."""
    monkeypatch.setattr(jobs.capacity, "NODES_REPORT_WAIT_S", 0)


def test_nodes_that_joined_after_the_report_are_waited_for(clean_env, fake_dashboard):
    """The report lags the cluster: right after workers joined it listed the 0-CPU head alone, and a submit
    to a cluster with 2 CPUs said it had 0 CPU."""
    address, routes = fake_dashboard
    routes["/api/cluster_status"] = cluster_status({"memory": [0.0, 1e9]})  # the head only
    joined = threading.Timer(2.0, lambda: routes.update({"/api/cluster_status": cluster_status({"CPU": [0.0, 2.0]})}))
    joined.start()
    try:
        jobs.check_cluster_resources(address, {"CPU": 1})
    finally:
        joined.cancel()


def test_too_few_gpus_fails_before_submitting(clean_env, fake_dashboard, no_report_wait):
    address, routes = fake_dashboard
    routes["/api/cluster_status"] = cluster_status({"CPU": [0.0, 2.0]})
    with pytest.raises(jobs.InsufficientResourcesError) as info:
        jobs.check_cluster_resources(address, {"GPU": 1, "CPU": 1})
    assert "has 0 GPU" in str(info.value) and "asks for 1 GPU" in str(info.value) and "CPU" not in str(info.value)


def test_too_few_cpus_or_a_missing_custom_resource_fails_before_submitting(clean_env, fake_dashboard, no_report_wait):
    """A stage that can never start would leave the job RUNNING forever behind Ray's infeasible warnings."""
    address, routes = fake_dashboard
    routes["/api/cluster_status"] = cluster_status({"CPU": [0.0, 4.0], "GPU": [0.0, 0.0]})
    with pytest.raises(jobs.InsufficientResourcesError) as info:
        jobs.check_cluster_resources(address, {"CPU": 8, "ssd": 1, "GPU": 0})
    message = str(info.value)
    assert "has 4 CPU, 0 ssd" in message and "asks for 8 CPU, 1 ssd" in message
    assert "--skip-resource-check" in message and "GPU" not in message


def test_unknown_totals_are_not_an_error(clean_env, fake_dashboard, caplog):
    address, _ = fake_dashboard
    assert jobs.cluster_totals(address) is None
    jobs.check_cluster_resources(address, {"GPU": 8})
    assert "not checked" in caplog.text


# --------------------------------------------------------------------------- submit pieces


def test_entrypoint_quotes_overrides_and_relativizes_the_config(tmp_path):
    config = tmp_path / "pipelines" / "configs" / "smoke.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("pipeline: crest\n")
    overrides = ["train.steps=10", "run.name=with space", "note=it's"]
    entrypoint = jobs.pipeline_entrypoint(str(config), overrides, str(tmp_path))
    assert shlex.split(entrypoint) == ["relay", "run", "pipelines/configs/smoke.yaml", *overrides]


def test_runtime_env_uploads_the_folder_without_local_clutter(tmp_path):
    env = jobs.build_runtime_env(str(tmp_path), {"RELAY_WORKSPACE": "/mnt/relay"}, ["einops"])
    assert env["working_dir"] == str(tmp_path)
    for excluded in (".venv", "relay-workspace", ".git", "benchmarks/results", "*.db"):
        assert excluded in env["excludes"]
    assert env["env_vars"] == {"RELAY_WORKSPACE": "/mnt/relay"}
    assert env["pip"] == ["einops"]


def test_other_workspaces_in_the_uploaded_folder_are_left_out(tmp_path):
    """A project folder holding other runs' workspaces (40 MB checkpoints) went over Ray's 100 MiB upload limit."""
    for workspace in ("ws-old", "runs/ws-b"):
        (tmp_path / workspace / "artifacts" / "runs").mkdir(parents=True)
    (tmp_path / "pipelines" / "artifacts").mkdir(parents=True)  # a folder named artifacts is no workspace
    (tmp_path / "a" / "b" / "deep" / "artifacts" / "runs").mkdir(parents=True)  # deeper than looked at
    env = jobs.build_runtime_env(str(tmp_path), {}, None)
    assert {"/ws-old", "/runs/ws-b"} <= set(env["excludes"])
    assert not any(e.startswith(("/pipelines", "/a")) for e in env["excludes"])


def test_an_upload_over_rays_limit_is_bad_input():
    error = connection._request_error("http://h:8265", None, "Request failed with status code 413", "/proj")
    assert isinstance(error, InputError) and "the upload of /proj is over Ray's 100 MiB limit" in str(error)


def test_another_refusal_that_names_413_somewhere_is_not_called_too_large():
    """Before, any error text holding "413" (a package hash, a port, a job id) was said as an upload over the limit
    (seen once in CI, for a project folder of 8 MB), and the real refusal was lost."""
    text = "Request failed with status code 500: Failed to fetch gcs://_ray_pkg_9e4135c2a1f0.zip: timed out."
    error = connection._request_error("http://h:8265", None, text, "/proj")
    assert "100 MiB" not in str(error) and str(error).endswith(f"refused the request: {text}")


def test_only_relay_and_mlflow_variables_travel(monkeypatch):
    monkeypatch.setenv("RELAY_WORKSPACE", "/mnt/relay")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    env = jobs.relay_env_vars()
    assert env["RELAY_WORKSPACE"] == "/mnt/relay"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "RAY_AUTH_TOKEN" not in env


@pytest.mark.parametrize("amount", [-1, float("nan"), float("inf"), "1"])
def test_impossible_gpu_amounts_are_refused_before_contacting_the_cluster(clean_env, tmp_path, amount):
    dead = f"http://127.0.0.1:{free_port()}"  # a ClusterUnreachableError would mean the cluster was asked
    with pytest.raises(ConfigError, match="num-gpus: expected a finite number >= 0"):
        jobs.submit_pipeline(dead, "smoke.yaml", [], str(tmp_path), num_gpus=amount)
    with pytest.raises(ConfigError, match="entrypoint-num-cpus"):
        jobs.submit_entrypoint(dead, "echo hi", str(tmp_path), entrypoint_num_cpus=amount)


def test_missing_working_dir_is_refused_before_contacting_the_cluster(clean_env, tmp_path):
    with pytest.raises(jobs.JobsError, match="not a folder"):
        jobs.submit_entrypoint("http://127.0.0.1:1", "echo hi", str(tmp_path / "nope"))


def test_unknown_job_and_duplicate_id_messages():
    missing = connection._request_error(
        "http://h:8265", "abc", "Request failed with status code 404: Job abc does not exist."
    )
    assert isinstance(missing, jobs.JobNotFoundError) and "relay jobs" in str(missing)
    duplicate = connection._request_error(
        "http://h:8265", "abc", "ValueError: Job with submission_id abc already exists."
    )
    assert "already has a job" in str(duplicate)


def test_importing_jobs_does_not_import_ray():
    code = "import sys, orchestrator.jobs; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
