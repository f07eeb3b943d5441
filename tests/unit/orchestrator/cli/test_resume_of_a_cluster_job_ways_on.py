"""`relay resume RUN` of a run submitted as a Ray job: what it says when RAY_ADDRESS holds the cluster's dashboard
URL, and when the job's driver still runs on this machine (a cluster of one machine).

The records are written by Relay's own ``save_run_record`` and ``Ledger`` inside a "job" (Ray's job
config variable and the address `relay submit` passes, as a job's entrypoint has them), in a child
process that then ends (its run reads INTERRUPTED), or in this process, whose driver is alive.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main, temporary
from orchestrator.cli.run.resume_checks import resume_address
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, RAY_JOB_ENV, Ledger
from orchestrator.registry import PipelineSpec

ROOT = Path(__file__).resolve().parents[4]
DASHBOARD = "http://127.0.0.1:38449"


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}

RECORD = """
import sys
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger

store, run_id, workspace = ArtifactStore(sys.argv[1]), sys.argv[2], sys.argv[3]
config = PipelineConfig(pipeline="toy", name="toy", run=RunSettings(workspace=workspace))
save_run_record(store, run_id, config, "toy.yaml", [])
done = {"g00/train": {"generation": 0, "state": "succeeded", "fingerprint": "f0"}}
Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}).write("RUNNING", done)
"""


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE", "RAY_ADDRESS", RAY_JOB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(JOB_ADDRESS_ENV, raising=False)
    # pytest's tmp_path (under /tmp) stands for a workspace every node mounts, as the operator's was
    monkeypatch.setattr(temporary, "temp_roots", list)


def job_env(job_id: str, run_id: str) -> dict[str, str]:
    """The environment of the entrypoint of Ray job ``job_id`` that `relay submit` sent to DASHBOARD for ``run_id``."""
    metadata = {"job_submission_id": job_id, "relay.run_id": run_id}
    return {RAY_JOB_ENV: json.dumps({"runtime_env": {}, "metadata": metadata}), JOB_ADDRESS_ENV: DASHBOARD}


def interrupted_job_run(workspace: Path, run_id: str, as_job: bool = True) -> None:
    """A run recorded by a driver (a job's, or a `relay run`'s) that ended without finishing: INTERRUPTED."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(job_env(run_id, run_id) if as_job else {})}
    subprocess.run(
        [sys.executable, "-c", RECORD, str(workspace / "artifacts"), run_id, str(workspace)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )


def snapshot(workspace: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the workspace: its bytes and mtime (nothing written means none changed, none added)."""
    return {
        str(path): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(workspace.rglob("*"))
        if path.is_file()
    }


def resume(workspace: Path, run_id: str) -> int:
    return main(["resume", run_id, "--workspace", str(workspace)], pipelines=SPECS)


def test_a_cluster_jobs_run_with_the_dashboard_in_ray_address_is_refused_with_a_resumes_ways_on(
    tmp_path: Path, capsys, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said it was resuming on a new local Ray, then refused as `relay run` does, advising `relay submit CONFIG`
    (a new run)."""
    interrupted_job_run(tmp_path, "r1")
    before = snapshot(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", DASHBOARD)
    caplog.set_level(logging.INFO, logger="relay")
    assert resume(tmp_path, "r1") == 2
    err = capsys.readouterr().err
    said = (
        f"$RAY_ADDRESS: {DASHBOARD} is a cluster's dashboard URL, and run r1 ran as a cluster job: resume it there "
        f"as a job with `relay submit --resume r1 --address {DASHBOARD}`, or unset RAY_ADDRESS to resume it here on "
        "a new local Ray instance"
    )
    assert said in err, err
    assert "resuming it" not in caplog.text + err and "relay submit CONFIG" not in err, caplog.text + err
    assert err.count("is a cluster's dashboard URL") == 1 and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


def test_a_run_of_no_job_with_the_dashboard_in_ray_address_is_told_how_to_resume_it(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted_job_run(tmp_path, "r2", as_job=False)
    before = snapshot(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", DASHBOARD)
    assert resume(tmp_path, "r2") == 2
    err = capsys.readouterr().err
    assert f"$RAY_ADDRESS: {DASHBOARD} is a dashboard URL; a driver joins a cluster at its GCS address" in err, err
    assert (
        f"To resume run r2 on that cluster, resume it there as a job with `relay submit --resume r2 --address {DASHBOARD}`"
        in err
    ), err
    assert "unset RAY_ADDRESS to resume it here on a new local Ray instance" in err, err
    assert "relay submit CONFIG" not in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


def test_the_resume_of_a_cluster_job_says_where_it_computes(
    tmp_path: Path, gone: str, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAY_ADDRESS naming a GCS: the resume joins that cluster; it said "here on a new local Ray"."""
    interrupted_job_run(tmp_path, "r3")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    caplog.set_level(logging.INFO, logger="relay")
    monkeypatch.setenv("RAY_ADDRESS", gone)
    assert resume_address(None, store, "r3", RunSettings(workspace=str(tmp_path))) is None
    assert f"run r3 ran as a cluster job: resuming it from here on the Ray cluster at {gone} ($RAY_ADDRESS)" in (
        caplog.text
    )
    caplog.clear()
    monkeypatch.delenv("RAY_ADDRESS")
    assert resume_address(None, store, "r3", RunSettings(workspace=str(tmp_path))) is None
    assert "run r3 ran as a cluster job: resuming it here on a new local Ray" in caplog.text, caplog.text


def test_a_job_whose_driver_runs_on_this_machine_is_stopped_as_a_job(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster of one machine: the job's driver lives here, and the resume advised `kill PID`, which left
    Ray's job RUNNING; `relay submit --resume` in the same case says `relay stop`."""
    for name, value in job_env("r4", "r4").items():
        monkeypatch.setenv(name, value)
    store = ArtifactStore(str(tmp_path / "artifacts"))
    save_run_record(
        store, "r4", ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path))), "toy.yaml", []
    )
    Ledger(store, "toy", "r4", "v1", 0, None, generations={0: 1}).write("RUNNING", {})  # this process: alive
    monkeypatch.delenv(RAY_JOB_ENV)  # the resume is typed in a shell of the same machine
    monkeypatch.delenv(JOB_ADDRESS_ENV)
    before = snapshot(tmp_path)
    assert resume(tmp_path, "r4") == 2
    err = capsys.readouterr().err
    assert f"run r4 is still running as Ray job r4 (driver pid {os.getpid()} on " in err, err
    assert f"stop it first (`relay stop r4 --address {DASHBOARD}`)" in err, err
    assert f"relay submit --resume r4 --address {DASHBOARD}" in err, err
    assert "kill" not in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before
