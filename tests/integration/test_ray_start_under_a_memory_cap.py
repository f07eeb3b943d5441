"""A local Ray that cannot start under a memory cap: the failure names its cause, its fix and Ray's logs, the run
reads FAILED, and ``run.object_store_memory`` is the fix that lets Ray start under the same cap.

Real starts, as a user met them: `relay run` under ``prlimit --as`` (each process's address space capped), where
Ray's raylet could not map its default object store (30% of the machine's memory; raylet.err: "mmap failed
with error: Cannot allocate memory"), and Relay only said the node timed out and to try again; `relay runs` then
listed the run INTERRUPTED, as if its driver had been killed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.relay_cli import ROOT, relay, relay_env

pytestmark = pytest.mark.integration

SMOKE = "pipelines/configs/smoke.yaml"
CAP_BYTES = 4 * 1024**3  # room for the driver (Ray and torch imported), not for Ray's default object store here
START_TIMEOUT_S = 300


def default_object_store_bytes() -> int:
    """The object store Ray sizes for itself on this machine (``run.object_store_memory`` unset)."""
    from ray._private.utils import estimate_available_memory, resolve_object_store_memory

    return resolve_object_store_memory(estimate_available_memory())


def capped(*command: str, workspace: Path) -> subprocess.CompletedProcess:
    """``command`` under ``prlimit --as=CAP_BYTES``, its child processes (Ray's raylet) capped alike."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    if default_object_store_bytes() < CAP_BYTES + 2**30:
        pytest.skip("Ray's default object store fits under the cap on this small a machine: nothing fails")
    return subprocess.run(
        ["prlimit", f"--as={CAP_BYTES}", *command],
        cwd=ROOT,
        env=relay_env(workspace),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def failed_start(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """`relay run SMOKE` under the cap, once for the module (Ray gives up on its raylet after ~40 s)."""
    workspace = tmp_path_factory.mktemp("capped") / "ws"
    done = capped(sys.executable, "-m", "orchestrator.cli", "run", SMOKE, workspace=workspace)
    return done, workspace


def test_a_failed_start_names_its_cause_the_fix_and_rays_logs(failed_start) -> None:
    done, _ = failed_start
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith("relay: could not start a local Ray instance: its object store could not get its memory")
    assert "Cannot allocate memory" in said and "run.object_store_memory" in said, said
    logs = re.search(r"Ray's logs: (\S+)\)$", said)
    assert logs is not None, said
    assert "mmap failed" in (Path(logs.group(1)) / "raylet.err").read_text(errors="replace")


def test_a_run_whose_ray_did_not_start_reads_failed_not_interrupted(failed_start) -> None:
    _, workspace = failed_start
    (run_id,) = [path.name for path in (workspace / "artifacts" / "runs").iterdir()]
    listed = relay("runs", "--workspace", str(workspace), workspace=workspace)
    assert listed.returncode == 0, listed.stderr[-2000:]
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith(run_id)]
    assert row[2] == "FAILED", listed.stdout
    ledger = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())
    assert "run.object_store_memory" in ledger["start_error"]
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    tracked = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert tracked and {run.info.status for run in tracked} == {"FAILED"}


def test_run_object_store_memory_lets_ray_start_under_the_same_cap(tmp_path: Path) -> None:
    """The key goes from the config through ``make_executor`` to ray.init: a store of 200MiB starts under the cap."""
    script = (
        "import ray\n"
        "from orchestrator.cli.run.execution import make_executor\n"
        "from orchestrator.config import RunSettings\n"
        "executor = make_executor(RunSettings(num_cpus=1, object_store_memory='200MiB'))\n"
        "print('store', int(ray.cluster_resources()['object_store_memory']))\n"
        "executor.shutdown()\n"
    )
    done = capped(sys.executable, "-c", script, workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"store {200 * 2**20}" in done.stdout, done.stdout[-2000:]
