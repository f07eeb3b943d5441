"""`relay resume` of a run whose driver may still run it, the resume's claim on the run, a dead tracking server.

The records are written by the engine's own Ledger and ``save_run_record`` into a real store (inside a
"job": Ray's job config variable and the address `relay submit` passes, as a job's entrypoint has them),
then edited as a ledger written on another machine reads. A cluster or server that does not answer is a
bound port nobody listens on; a second resume on this machine is a real second process.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.run import resume_guard
from orchestrator.cli.run.execution import PreparedRun, cluster_job
from orchestrator.cli.run.resume_checks import resume_address
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, RAY_JOB_ENV, Ledger
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec

ROOT = Path(__file__).resolve().parents[4]


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MLFLOW_TRACKING_URI",
        "RELAY_ARTIFACT_URI",
        "RELAY_WORKSPACE",
        "RAY_ADDRESS",
        RAY_JOB_ENV,
        JOB_ADDRESS_ENV,
    ):
        monkeypatch.delenv(name, raising=False)


def store_of(workspace: Path) -> ArtifactStore:
    return ArtifactStore(str(workspace / "artifacts"))


def recorded(workspace: Path, run_id: str, status: str = "RUNNING") -> Path:
    """A run's record and ledger as its driver (this process) writes them, with g00/train done; the ledger."""
    store = store_of(workspace)
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(workspace)))
    save_run_record(store, run_id, config, "toy.yaml", [])
    done = {"g00/train": {"generation": 0, "state": "succeeded", "fingerprint": "f0"}}
    Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}).write(status, done)
    return workspace / "artifacts" / "runs" / run_id / "ledger.json"


def on_another_machine(ledger: Path, host: str = "gpu-box-7", pid: int = 4242) -> bytes:
    """The ledger as a driver on ``host`` wrote it (its other fields kept); its bytes."""
    data = json.loads(ledger.read_text())
    data["driver"].update(host=host, pid=pid)
    ledger.write_text(json.dumps(data))
    return ledger.read_bytes()


def as_job(monkeypatch: pytest.MonkeyPatch, job_id: str, run_id: str, address: str | None) -> None:
    """This process as the entrypoint of Ray job ``job_id`` of run ``run_id`` that `relay submit` sent to ``address``."""
    metadata = {"job_submission_id": job_id, "relay.run_id": run_id}
    monkeypatch.setenv(RAY_JOB_ENV, json.dumps({"runtime_env": {}, "metadata": metadata}))
    if address is not None:
        monkeypatch.setenv(JOB_ADDRESS_ENV, address)


def resume(workspace: Path, run_id: str, *flags: str) -> int:
    return main(["resume", run_id, "--workspace", str(workspace), *flags], pipelines=SPECS)


def test_a_run_running_on_another_machine_is_refused_and_its_ledger_kept(tmp_path: Path, capsys) -> None:
    """Its driver's pid cannot be checked from here: a resume trained its stages again beside it, and rewrote
    its ledger to name this machine (INTERRUPTED in `relay runs`)."""
    written = on_another_machine(recorded(tmp_path, "r1"))
    assert resume(tmp_path, "r1") == 2
    err = capsys.readouterr().err
    assert "run r1 is RUNNING with its driver on another machine (gpu-box-7, pid 4242)" in err, err
    assert re.search(r"resume with: relay resume r1( --artifact-uri \S+)? --driver-gone", err), err
    assert (tmp_path / "artifacts" / "runs" / "r1" / "ledger.json").read_bytes() == written
    resume_guard.check_not_running(store_of(tmp_path), "r1", driver_gone=True)  # the user says it is gone: taken


def test_a_submitted_run_whose_cluster_does_not_answer_is_refused_naming_both_ways_on(
    tmp_path: Path, gone: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_job(monkeypatch, "r2", "r2", f"http://{gone}")  # the job's `relay run` writes its record
    ledger = recorded(tmp_path, "r2")
    command = json.loads((tmp_path / "artifacts" / "runs" / "r2" / "command.json").read_text())
    assert command["driver"]["job_id"] == "r2" and command["driver"]["job_address"] == f"http://{gone}"
    written = on_another_machine(ledger, host="head-node")
    monkeypatch.delenv(RAY_JOB_ENV)  # the laptop
    assert resume(tmp_path, "r2") == 2
    err = capsys.readouterr().err
    assert f"run r2 is RUNNING as a job of the Ray cluster at http://{gone}, which does not answer" in err, err
    assert "relay submit --resume r2 --address http://NEW-HEAD:8265" in err, err
    assert re.search(r"resume here with: relay resume r2( --artifact-uri \S+)? --driver-gone", err), err
    assert ledger.read_bytes() == written


def test_the_job_relay_submit_resume_sent_for_the_run_takes_it_over(
    tmp_path: Path, gone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the head was lost: the ledger still names the dead head's driver, and `relay submit --resume`
    checked the new cluster's jobs of the run before it submitted this one."""
    as_job(monkeypatch, "r3", "r3", f"http://{gone}")
    on_another_machine(recorded(tmp_path, "r3"), host="old-head")
    as_job(monkeypatch, "r3-resume-2", "r3", "http://new-head:8265")
    resume_guard.check_not_running(store_of(tmp_path), "r3")
    as_job(monkeypatch, "other", "another-run", "http://new-head:8265")  # a job of another run is not its resume
    with pytest.raises(ConfigError, match="does not answer"):
        resume_guard.check_not_running(store_of(tmp_path), "r3")


def test_a_resume_claims_the_run_before_anything_slow_and_gives_it_back_on_bad_input(tmp_path: Path, capsys) -> None:
    """Two resumes of one run in the same seconds both ran its stages: the ledger named the dead driver
    until the first one's Ray had started. The claim names this driver at once; a second process is refused
    even when the ledger it reads still names the dead driver (both read it before either claimed)."""
    ledger = recorded(tmp_path, "r4", status="FAILED")
    earlier = ledger.read_bytes()
    store = store_of(tmp_path)
    with pytest.raises(ConfigError), resume_guard.locked(store, "r4"), resume_guard.claimed(store, "r4"):
        claimed = json.loads(ledger.read_text())
        assert claimed["status"] == "RUNNING" and claimed["stages"]["g00/train"]["state"] == "succeeded"
        assert resume(tmp_path, "r4") == 2
        assert f"run r4 is still running (driver pid {claimed['driver']['pid']}" in capsys.readouterr().err
        ledger.write_bytes(earlier)  # what a second resume that read the ledger before this claim saw
        second = subprocess.run(
            [sys.executable, "-c", CLAIM_IN_ANOTHER_PROCESS, str(tmp_path / "artifacts"), "r4"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert "run r4 is being resumed by another process on this machine" in second.stderr, second.stderr
        raise ConfigError(["found after the claim"], "the command line")
    assert ledger.read_bytes() == earlier  # the bad input found after the claim leaves the ledger as it was


def test_a_claim_given_back_leaves_the_ledger_as_it_was_to_its_mtime(tmp_path: Path) -> None:
    """Bad input found after the claim rewrote the ledger with the same content: 'nothing written' did not hold."""
    ledger = recorded(tmp_path, "r6", status="FAILED")
    before = (ledger.read_bytes(), ledger.stat().st_mtime_ns)
    with pytest.raises(ConfigError), resume_guard.claimed(store_of(tmp_path), "r6"):
        assert json.loads(ledger.read_text())["status"] == "RUNNING"
        raise ConfigError(["found after the claim"], "the command line")
    assert (ledger.read_bytes(), ledger.stat().st_mtime_ns) == before


def test_the_lock_on_a_run_is_let_go_when_its_resume_ends_returned_or_raised(tmp_path: Path) -> None:
    """A notebook lives on after ``relay.resume``: its lock on the run must not outlive the resume."""
    recorded(tmp_path, "r8", status="FAILED")
    store = store_of(tmp_path)
    with (
        resume_guard.locked(store, "r8"),
        pytest.raises(ConfigError, match="being resumed by another process"),
        resume_guard.locked(store, "r8"),
    ):
        pass
    with pytest.raises(RuntimeError), resume_guard.locked(store, "r8"):
        raise RuntimeError("the run failed")
    with resume_guard.locked(store, "r8"):  # taken again: neither end kept it
        pass


CLAIM_IN_ANOTHER_PROCESS = """
import sys
from orchestrator.cli.run import resume_guard
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import ConfigError
try:
    store = ArtifactStore(sys.argv[1])
    with resume_guard.locked(store, sys.argv[2]), resume_guard.claimed(store, sys.argv[2]):
        pass
except ConfigError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def test_a_submitted_run_resumed_here_says_how_to_resume_it_on_its_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """It computed on a new local Ray without a word; an interrupted local attempt's hint named only `relay resume`."""
    as_job(monkeypatch, "r5", "r5", "http://10.0.0.5:8265")
    recorded(tmp_path, "r5", status="FAILED")
    monkeypatch.delenv(RAY_JOB_ENV)
    store = store_of(tmp_path)
    caplog.set_level(logging.INFO, logger="relay")
    assert resume_address(None, store, "r5") is None
    said = "run r5 ran as a cluster job: resuming it here on a new local Ray; to resume it on its cluster: "
    assert said + "relay submit --resume r5 --address http://10.0.0.5:8265" in caplog.text, caplog.text
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path)))
    assert cluster_job(PreparedRun(SPECS["toy"], config, "r5", None, store, None))  # Runner's hint: submit --resume
    hint = f" (a cluster job: relay submit --resume r5 --address http://10.0.0.5:8265 --artifact-uri {store.uri})"
    assert resume_guard.cluster_job_hint(store, "r5") == hint


@pytest.mark.parametrize("run_id", ["smoke-20260101-000000-abcd", "0123456789abcdef0123456789abcdef"])
def test_a_run_id_read_from_a_tracking_server_that_does_not_answer_says_so(
    tmp_path: Path, gone: str, capsys, monkeypatch: pytest.MonkeyPatch, run_id: str
) -> None:
    """It said the run was not in the artifact store, or that the tracking store did not know the MLflow id."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{gone}")
    assert main(["generations", run_id, "--workspace", str(tmp_path / "ws")], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert f"no MLflow tracking server answers at http://{gone}" in err, err
    assert "artifact store" not in err and "does not know" not in err, err
    assert not (tmp_path / "ws").exists()


def test_a_claim_given_back_on_bad_input_writes_nothing_for_a_run_without_a_ledger(tmp_path: Path) -> None:
    """A run interrupted while Ray started has no ledger yet; a resume refused after its claim leaves none."""
    store = store_of(tmp_path)
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path)))
    save_run_record(store, "r6", config, "toy.yaml", [])
    folder = tmp_path / "artifacts" / "runs" / "r6"
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(ConfigError), resume_guard.claimed(store, "r6"):
        assert json.loads((folder / "ledger.json").read_text())["status"] == "RUNNING"
        raise ConfigError(["found after the claim"], "the command line")
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_a_laptops_attempt_of_a_submitted_run_is_not_taken_on_its_jobs_word(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job ended long ago; the driver the ledger names now is another machine's local resume of the run."""
    as_job(monkeypatch, "r7", "r7", "http://10.0.0.5:8265")
    ledger = recorded(tmp_path, "r7")
    monkeypatch.delenv(RAY_JOB_ENV)
    data = json.loads(ledger.read_text())
    data["driver"] = {"host": "laptop-2", "pid": 4343}
    ledger.write_text(json.dumps(data))
    assert resume(tmp_path, "r7") == 2
    assert "run r7 is RUNNING with its driver on another machine (laptop-2, pid 4343)" in capsys.readouterr().err
