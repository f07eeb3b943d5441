"""`relay resume RUN` from another machine while RUN still runs as a Ray job on its cluster.

Before, only a driver on this machine was checked (by its pid): a run whose ledger said RUNNING
with its driver on the head node was resumed from a laptop, trained its stages a second time,
and its ledger named the laptop (`relay runs`: INTERRUPTED). Real pieces: a `ray start --head`, a
Ray job whose driver writes the run's record as a job's `relay run` does (Relay's own record
code, in the job's environment with the address `relay submit` passes), on a machine of its own
name (a UTS namespace: `unshare --uts`, `hostname`); the laptop is this test process.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import jobs
from orchestrator.cli import main
from orchestrator.cli.run import resume_guard
from orchestrator.cli.run.resume_checks import resume_address
from orchestrator.config import PipelineConfig
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, RAY_JOB_ENV
from orchestrator.registry import PipelineSpec
from tests.cluster.cluster import RayCluster
from tests.integration.cluster import free_port, ray_temp_dir, user_env, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) for a second host name"),
]

ROOT = Path(__file__).resolve().parents[2]
HEAD_HOST = "head-node-1"


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}

JOB_DRIVER = """
import sys, time
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger

store, run_id, workspace = ArtifactStore(sys.argv[1]), sys.argv[2], sys.argv[3]
config = PipelineConfig(pipeline="toy", name="toy", run=RunSettings(workspace=workspace))
save_run_record(store, run_id, config, "toy.yaml", [])
Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}).write("RUNNING", {})
print("recorded", flush=True)
time.sleep(600)
"""


@pytest.fixture
def head(tmp_path: Path) -> Iterator[RayCluster]:
    """A real `ray start --head` with its own ports, HOME and temp dir; stopped after the test."""
    home = tmp_path / "head-home"
    home.mkdir()
    cluster = RayCluster(user_env(home), ray_temp_dir(tmp_path), free_port(), free_port())
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def the_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE", "RAY_ADDRESS", RAY_JOB_ENV):
        monkeypatch.delenv(name, raising=False)


def submitted(head: RayCluster, tmp_path: Path, run_id: str) -> str:
    """Job ``run_id`` whose driver, on host HEAD_HOST, records run ``run_id`` in tmp_path's store and keeps running."""
    code = tmp_path / "job"
    code.mkdir()
    (code / "driver.py").write_text(JOB_DRIVER)
    driver = shlex.join([sys.executable, "driver.py", str(tmp_path / "artifacts"), run_id, str(tmp_path)])
    entrypoint = f"unshare --uts sh -c {shlex.quote(f'hostname {HEAD_HOST} && exec {driver}')}"
    env_vars = {"PYTHONPATH": str(ROOT), JOB_ADDRESS_ENV: head.dashboard}  # as `relay submit` passes its address
    return jobs.submit_entrypoint(head.dashboard, entrypoint, str(code), submission_id=run_id, env_vars=env_vars)


def ledger_of(tmp_path: Path, run_id: str) -> dict:
    path = tmp_path / "artifacts" / "runs" / run_id / "ledger.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_run_still_running_as_a_job_is_not_resumed_from_another_machine(
    head: RayCluster, tmp_path: Path, capsys, caplog
) -> None:
    run_id = submitted(head, tmp_path, "onjob")
    wait_for(
        lambda: (
            ledger_of(tmp_path, run_id).get("status") == "RUNNING"
            or jobs.job_status(head.dashboard, run_id) not in ("PENDING", "RUNNING")
        ),
        300,
        "the job to record its run",
    )
    written = ledger_of(tmp_path, run_id)
    assert written["driver"]["host"] == HEAD_HOST, jobs.job_logs(head.dashboard, run_id)
    assert main(["resume", run_id, "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert f"run {run_id} is still running as job {run_id} (RUNNING) on the Ray cluster at {head.dashboard}" in err
    assert f"relay stop {run_id} --address {head.dashboard}" in err, err
    assert ledger_of(tmp_path, run_id) == written  # the job's driver is still the run's

    jobs.stop_job(head.dashboard, run_id)
    jobs.wait_for_job(head.dashboard, run_id, timeout_s=120)
    store = ArtifactStore(str(tmp_path / "artifacts"))
    resume_guard.check_not_running(store, run_id)  # its job ended: the RUNNING ledger is left by a driver gone
    caplog.set_level(logging.INFO, logger="relay")
    assert resume_address(None, store, run_id) is None  # computed here on a new local Ray, and said so
    said = f"run {run_id} ran as a cluster job: resuming it here on a new local Ray; to resume it on its cluster: "
    assert f"{said}relay submit --resume {run_id} --address {head.dashboard}" in caplog.text, caplog.text
