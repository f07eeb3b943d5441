"""`relay submit / status / logs / stop` through the real CLI against a real local Ray head.

The cluster is conftest.py's `ray_head` (token auth, dashboard on, 2 CPUs). The job runs
`relay run pipelines/configs/smoke.yaml` inside the uploaded copy of the repository; RELAY_WORKSPACE
is forwarded to it (jobs.relay_env_vars), so its artifacts and MLflow store land in a temporary
folder this test reads.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.relay_cli import relay as run_relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "pipelines/configs/smoke.yaml"


def relay(*args: str, workspace: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, as the user who started the cluster (HOME holds the token)."""
    return run_relay(*args, workspace=workspace, timeout_s=timeout_s)


def wait_status(address: str, job_id: str, wanted: set[str], workspace: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = relay("status", job_id, "--address", address, workspace=workspace).stdout.strip()
        if status in wanted or status in {"SUCCEEDED", "FAILED", "STOPPED"}:
            return status
        assert time.monotonic() < deadline, f"{job_id} still {status} after {timeout_s:g} s"
        time.sleep(2)


def test_submit_smoke_logs_mlflow_and_stop(as_user, tmp_path):
    address, workspace = as_user, tmp_path / "ws"
    started = time.monotonic()
    submitted = relay("submit", SMOKE, "--address", address, "--submission-id", "relay-smoke", workspace=workspace)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert submitted.stdout.strip() == "relay-smoke"
    status = wait_status(address, "relay-smoke", {"SUCCEEDED"}, workspace, timeout_s=900)
    logs = relay("logs", "relay-smoke", "--address", address, workspace=workspace)
    assert status == "SUCCEEDED", logs.stdout[-4000:]
    print(f"\nsmoke job SUCCEEDED {time.monotonic() - started:.0f} s after submission")
    assert "balanced_accuracy" in logs.stdout and "finished: 7 executed, 0 cached" in logs.stdout

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay")
    runs = client.search_runs([experiment.experiment_id], max_results=200)
    names = {run.info.run_name for run in runs}
    assert {"gen-00", "gen-01", "g00/train", "g00/pseudo_label", "g01/evaluate"} <= names
    parent = next(run for run in runs if run.info.run_name.startswith("smoke-"))
    assert parent.info.status == "FINISHED"
    key = next(k for k in parent.data.metrics if k.endswith("balanced_accuracy"))  # per-generation, on the parent
    assert sorted(m.step for m in client.get_metric_history(parent.info.run_id, key)) == [0, 1]

    long = relay(
        "submit",
        SMOKE,
        "train.steps=20000",
        "--address",
        address,
        "--submission-id",
        "relay-long",
        workspace=tmp_path / "ws-long",
    )
    assert long.returncode == 0, long.stderr[-3000:]
    assert wait_status(address, "relay-long", {"RUNNING"}, workspace, timeout_s=300) == "RUNNING"
    stopped = relay("stop", "relay-long", "--address", address, workspace=workspace)
    assert stopped.returncode == 0 and "stop requested" in stopped.stdout
    assert wait_status(address, "relay-long", {"STOPPED"}, workspace, timeout_s=120) == "STOPPED"


def test_bad_input_fails_clearly(as_user, tmp_path):
    address, workspace = as_user, tmp_path / "ws"
    unknown = relay("status", "raysubmit_nope", "--address", address, workspace=workspace)
    assert unknown.returncode == 1
    assert "no job 'raysubmit_nope'" in unknown.stderr and "relay jobs --address" in unknown.stderr
    logs = relay("logs", "raysubmit_nope", "--address", address, workspace=workspace)
    assert logs.returncode == 1 and "no job 'raysubmit_nope'" in logs.stderr
    gpus = relay("submit", SMOKE, "resources.train.num_gpus=1", "--address", address, workspace=workspace)
    assert gpus.returncode == 1
    assert "has 0 GPU(s), the pipeline asks for 1" in gpus.stderr
    listed = relay("jobs", "--address", address, workspace=workspace)
    assert "num_gpus=1" not in listed.stdout, "nothing was submitted"
