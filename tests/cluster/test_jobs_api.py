"""orchestrator.jobs against the cluster tier's real head (ray start --head, dashboard on, token auth).

This process acts as the user who started the cluster: HOME holds the token file that
`ray get-auth-token --generate` wrote, and no auth variable is set, so the client must find
the file and switch itself to token mode.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from orchestrator import jobs
from tests.cluster.conftest import Stack
from tests.integration.cluster import AUTH_VARS

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(420)]


@pytest.fixture
def as_user(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    """HOME with the cluster's token file, no RAY_AUTH_* variables (teardown restores what jobs sets)."""
    monkeypatch.setenv("HOME", stack.env["HOME"])
    for name in AUTH_VARS:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    return stack.cluster.dashboard


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

    hello_id = f"relay-hello-{uuid.uuid4().hex[:6]}"
    hello = jobs.submit_entrypoint(address, "python -c \"print('hello relay')\"", working_dir, submission_id=hello_id)
    assert hello == hello_id
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
        jobs.submit_entrypoint(address, "echo again", working_dir, submission_id=hello_id)

    listed = {row["id"]: row for row in jobs.list_jobs(address)}
    assert listed[hello]["status"] == "SUCCEEDED" and "hello relay" in listed[hello]["entrypoint"]
    assert listed[sleeper]["status"] == "STOPPED" and listed[sleeper]["start_time"]


def test_gpu_request_on_a_cpu_cluster_fails_before_submitting(as_user, tmp_path):
    address = as_user
    before = len(jobs.list_jobs(address))
    with pytest.raises(jobs.InsufficientResourcesError, match="has 0 GPU"):
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
