"""`relay submit --resume RUN` of a run whose record says FINISHED submits nothing and says so (exit 0).

Before the fix the job was submitted, found every stage cached (`0 executed, 7 cached`) and ended. A finished run
whose MLflow record is incomplete is still submitted: its resume fills the record in. The records are real
(``save_run_record`` and the engine's Ledger in a real store folder); the cluster is the small Jobs server of
test_cluster_submit_jobs_server, which keeps what it was sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main, temporary
from orchestrator.cli.jobs.run_job import finished_note
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger, write_tracking
from orchestrator.registry import PipelineSpec
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import JobsServer, job, project, server

__all__ = ["project", "server"]  # the fixtures, used by name


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}


@pytest.fixture
def shared_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's folders (under the temp folder) stand for a mount every node sees: `relay submit` refuses a store
    in a temporary folder before it would submit anything."""
    monkeypatch.setattr(temporary, "temp_roots", list)


def recorded(store_folder: Path, run_id: str, status: str) -> ArtifactStore:
    """A run's record and ledger as its job's `relay run` leaves them, with g00/train done, ended ``status``."""
    store = ArtifactStore(str(store_folder))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(artifact_uri=str(store_folder)))
    save_run_record(store, run_id, config, "toy.yaml", [])
    done = {"g00/train": {"generation": 0, "state": "succeeded", "fingerprint": "f0"}}
    Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}).write(status, done)
    return store


def test_a_finished_run_is_not_submitted(
    server: JobsServer, project: Path, tmp_path: Path, shared_mount: None, capsys
) -> None:
    recorded(tmp_path / "store", "s3", "FINISHED")
    server.jobs = [job("s3", "SUCCEEDED")]
    argv = ["submit", "--resume", "s3", "--address", server.address, "--artifact-uri", str(tmp_path / "store")]
    assert main(argv, pipelines=SPECS) == 0
    out, err = capsys.readouterr()
    assert out == "", "no job id: no job"
    assert "run s3 finished; nothing to resume, so no job was submitted" in err
    assert f"`relay generations s3 --artifact-uri {tmp_path / 'store'}` shows its results" in err
    assert server.submitted == [] and server.uploads == []


def test_a_failed_run_is_submitted(
    server: JobsServer, project: Path, tmp_path: Path, shared_mount: None, capsys
) -> None:
    recorded(tmp_path / "store", "s3", "FAILED")
    server.jobs = [job("s3", "FAILED")]
    argv = ["submit", "--resume", "s3", "--address", server.address, "--artifact-uri", str(tmp_path / "store")]
    assert main(argv, pipelines=SPECS) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "s3-resume-2"
    assert [request["submission_id"] for request in server.submitted] == ["s3-resume-2"]


@pytest.mark.parametrize("status", ["FAILED", "RUNNING", "STOPPED"])
def test_a_run_not_finished_is_resumed(tmp_path: Path, status: str) -> None:
    assert finished_note(recorded(tmp_path / "store", "s3", status), "s3") is None


def test_a_finished_run_whose_mlflow_record_is_incomplete_is_resumed(tmp_path: Path) -> None:
    """Its resume fills the MLflow record in (`relay runs` says so with its `*`)."""
    store = recorded(tmp_path / "store", "s3", "FINISHED")
    write_tracking(store, "s3", "g00/train", "http://127.0.0.1:5000")
    assert finished_note(store, "s3") is None
