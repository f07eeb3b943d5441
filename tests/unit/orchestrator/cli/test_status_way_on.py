"""`relay status RUN` of a job that ended with its run not finished says the way on: `relay submit --resume`.

Before the fix: after `relay submit ... --run-id s3` and a SIGKILL of the job's `relay run` driver, `relay status s3`
said only Ray's `FAILED` while `relay runs` said INTERRUPTED, and nothing named `relay submit --resume s3`. The run
records are real (``save_run_record`` and the engine's Ledger in a real store folder); the cluster is the small Jobs
server of test_cluster_submit_jobs_server, answering with the job's metadata and environment as Ray does.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger, write_traceback
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import JobsServer, job, server

__all__ = ["server"]  # the fixture, used by name


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


def _reaped() -> int:
    """The pid of a process of this machine that has ended (the killed driver)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def recorded(store_folder: Path, run_id: str, status: str, stages: dict[str, Any], host: str | None = None) -> None:
    """A run's record and ledger as its job's driver left them (``host``: the driver's machine, default this one,
    with a driver process that has ended)."""
    store = ArtifactStore(str(store_folder))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(artifact_uri=str(store_folder)))
    save_run_record(store, run_id, config, "toy.yaml", [])
    Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}).write(status, stages)
    ledger = store_folder / "runs" / run_id / "ledger.json"
    data = json.loads(ledger.read_text())
    data["driver"].update(host=host or socket.gethostname(), pid=_reaped())
    ledger.write_text(json.dumps(data))


TRAINED = {"g00/train": {"generation": 0, "state": "succeeded", "fingerprint": "f0"}}


def submitted(job_id: str, status: str, run_id: str, store: Path, resume: bool = False) -> dict[str, Any]:
    """The job as Ray's Jobs server describes it: `relay submit` set its metadata and environment (a resume job
    names its store with --artifact-uri instead)."""
    described = {**job(job_id, status), "metadata": {"relay.run_id": run_id}}
    if resume:
        return {**described, "entrypoint": f"relay resume {run_id} --artifact-uri {store}"}
    return {**described, "runtime_env": {"env_vars": {"RELAY_ARTIFACT_URI": str(store)}}}


def status(server: JobsServer, job_id: str, capsys: pytest.CaptureFixture) -> tuple[str, str]:
    assert main(["status", job_id, "--address", server.address]) == 0
    return capsys.readouterr()


def test_a_killed_driver_s_run_is_told_to_resume_as_a_job(server: JobsServer, tmp_path: Path, capsys) -> None:
    recorded(tmp_path / "store", "s3", "RUNNING", TRAINED)
    server.jobs = [submitted("s3", "FAILED", "s3", tmp_path / "store")]
    out, err = status(server, "s3", capsys)
    assert out == "FAILED\n", "stdout stays Ray's status alone"
    assert (
        f"run s3 is INTERRUPTED, not finished: `relay submit --resume s3 --address {server.address} --artifact-uri "
        f"{tmp_path / 'store'}` continues it" in err
    ), err


def test_a_run_whose_driver_ran_on_the_head_reads_as_its_record_says(
    server: JobsServer, tmp_path: Path, capsys
) -> None:
    """This machine cannot check the head's driver: the record says RUNNING, the ended job says it is gone."""
    recorded(tmp_path / "store", "s3", "RUNNING", TRAINED, host="head-node")
    server.jobs = [submitted("s3", "FAILED", "s3", tmp_path / "store")]
    err = status(server, "s3", capsys)[1]
    assert "run s3 is not finished (its record says RUNNING, but its job has ended)" in err, err
    assert (
        f"`relay submit --resume s3 --address {server.address} --artifact-uri {tmp_path / 'store'}` continues it" in err
    )


def test_a_failed_stage_is_named_with_the_resume_of_the_newest_job(server: JobsServer, tmp_path: Path, capsys) -> None:
    failed = {**TRAINED, "g00/evaluate": {"generation": 0, "state": "failed", "error": "ValueError: bad labels"}}
    recorded(tmp_path / "store", "s3", "FAILED", failed)
    kept = write_traceback(ArtifactStore(str(tmp_path / "store")), "s3", "g00/evaluate", 1, "ValueError: bad labels")
    server.jobs = [
        submitted("s3", "FAILED", "s3", tmp_path / "store"),
        submitted("s3-resume-2", "FAILED", "s3", tmp_path / "store", resume=True),
    ]
    err = status(server, "s3", capsys)[1]
    assert "run s3 is FAILED, not finished: stage g00/evaluate failed: ValueError: bad labels" in err, err
    assert (
        f"`relay submit --resume s3 --address {server.address} --artifact-uri {tmp_path / 'store'}` retries it" in err
    )
    assert f"(its traceback: {tmp_path / 'store' / kept})" in err, err


@pytest.mark.parametrize(("job_status", "run_status"), [("SUCCEEDED", "FINISHED"), ("RUNNING", "RUNNING")])
def test_a_finished_run_or_a_running_job_gets_no_way_on(
    server: JobsServer, tmp_path: Path, capsys, job_status: str, run_status: str
) -> None:
    recorded(tmp_path / "store", "s3", run_status, TRAINED)
    server.jobs = [submitted("s3", job_status, "s3", tmp_path / "store")]
    assert status(server, "s3", capsys) == (f"{job_status}\n", "")


def test_a_store_not_seen_from_here_gets_no_way_on(server: JobsServer, tmp_path: Path, capsys) -> None:
    server.jobs = [submitted("s3", "FAILED", "s3", tmp_path / "not-here")]
    assert status(server, "s3", capsys) == ("FAILED\n", "")
