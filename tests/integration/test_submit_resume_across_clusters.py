"""`relay submit --resume` and `relay stop` against real token-auth Ray heads (Ray's own Jobs API, real jobs).

- Two clusters, one token: a run whose job still ran on the first was resumed on the second as well (two drivers
  of one ledger and MLflow run); it is refused now, and goes on once that job ended or that head is gone.
- A real `relay submit` of the smoke pipeline whose store is set by an override (run.workspace=) while this shell's
  RELAY_WORKSPACE names another: `relay stop` waits until Ray says STOPPED, and says how to go on with the store
  it wrote to (before: it returned at once, the resume typed next was refused as "still running; stop it first",
  and `relay status` read this shell's store and said nothing); the resume typed right after is sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import jobs
from orchestrator.cli import main
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, RAY_JOB_ENV
from tests.cluster.cluster import RayCluster
from tests.integration.cluster import AUTH_VARS, durable_folder, free_port, user_env, wait_for
from tests.integration.test_resume_of_a_running_job import JOB_DRIVER, SPECS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "pipelines/configs/smoke.yaml"
CLI_TIMEOUT_S = 300


@contextlib.contextmanager
def heads(*names: str, workers: int = 0) -> Iterator[list[RayCluster]]:
    """Real `ray start --head` clusters (no CPUs; the first with ``workers`` worker nodes of 2 CPUs), each with its
    own ports and a short temp dir (Ray's socket paths), all with the token of one HOME; stopped when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="rsr", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    env = {**user_env(home), "RAY_AUTH_MODE": "token"}
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    clusters = [RayCluster(env, root / name, free_port(), free_port()) for name in names]
    try:
        for cluster in clusters:
            cluster.start_head()
        for n in range(workers):
            clusters[0].start_worker(f"node_{n}")
        clusters[0].wait_until_nodes(1 + workers)
        yield clusters
    finally:
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """This process as the user who started the clusters (HOME set per test), in a small project folder."""
    for name in (*AUTH_VARS, "RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI", RAY_JOB_ENV):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    project = tmp_path / "project"
    project.mkdir()
    (project / "note.txt").write_text("the resume job's upload\n")
    monkeypatch.chdir(project)
    yield


def recording_job(head: RayCluster, code: Path, store: Path, run_id: str) -> str:
    """Job ``run_id`` on ``head`` whose driver records run ``run_id`` in ``store`` and keeps running."""
    code.mkdir(parents=True, exist_ok=True)
    (code / "driver.py").write_text(JOB_DRIVER)
    entrypoint = shlex.join([sys.executable, "driver.py", str(store), run_id, str(store.parent)])
    env_vars = {"PYTHONPATH": str(ROOT), JOB_ADDRESS_ENV: head.dashboard}  # as `relay submit` passes its address
    return jobs.submit_entrypoint(head.dashboard, entrypoint, str(code), submission_id=run_id, env_vars=env_vars)


def ledger_status(store: Path, run_id: str) -> str | None:
    path = store / "runs" / run_id / "ledger.json"
    return json.loads(path.read_text()).get("status") if path.exists() else None


def test_a_resume_on_another_cluster_waits_for_the_run_to_end_on_its_own(
    as_user: None, tmp_path: Path, capsys, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    with heads("a", "b") as (old, new), durable_folder("resume-elsewhere") as workspace:
        monkeypatch.setenv("HOME", old.env["HOME"])
        store, run_id = workspace / "artifacts", f"elsewhere-{uuid.uuid4().hex[:6]}"
        recording_job(old, tmp_path / "code", store, run_id)
        wait_for(
            lambda: (
                ledger_status(store, run_id) == "RUNNING"
                or jobs.job_status(old.dashboard, run_id) in jobs.TERMINAL_STATUSES
            ),
            300,
            "the job to record its run",
        )
        assert ledger_status(store, run_id) == "RUNNING", jobs.job_logs(old.dashboard, run_id)
        resume = ["submit", "--resume", run_id, "--address", new.dashboard, "--artifact-uri", str(store)]

        assert main(resume, pipelines=SPECS) == 2  # its job still runs on the old cluster
        err = capsys.readouterr().err
        assert f"run {run_id} is still running as job {run_id} (RUNNING) on the Ray cluster at {old.dashboard}" in err
        assert f"`relay stop {run_id} --address {old.dashboard}`" in err
        assert jobs.list_jobs(new.dashboard) == []  # nothing sent to the new cluster

        assert main(["stop", run_id, "--address", old.dashboard], pipelines=SPECS) == 0  # waits for Ray's STOPPED
        assert capsys.readouterr().out.splitlines() == [f"{run_id}: stop requested", f"{run_id}: STOPPED"]
        caplog.set_level(logging.INFO, logger="relay")
        assert main(resume, pipelines=SPECS) == 0  # its job there has ended: sent
        assert capsys.readouterr().out.strip() == run_id
        assert f"its jobs on the Ray cluster at {old.dashboard}, where it last ran, have ended" in caplog.text
        (sent,) = jobs.list_jobs(new.dashboard)
        assert sent["id"] == run_id and sent["entrypoint"].startswith(f"relay resume {run_id} --artifact-uri")
        wait_for(lambda: jobs.job_status(new.dashboard, run_id) in jobs.TERMINAL_STATUSES, 300, "the first resume")

        old.stop()  # the old head is lost: nothing answers there
        assert main(resume, pipelines=SPECS) == 0
        assert capsys.readouterr().out.strip() == f"{run_id}-resume-2"
        assert f"{old.dashboard}, which does not answer: taken as lost; resuming on {new.dashboard}" in caplog.text


def relay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real CLI in its own process, from the repository root (the folder a submit uploads)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def test_stop_then_resume_of_a_real_run_whose_store_the_config_set(tmp_path: Path) -> None:
    with (
        heads("a", workers=1) as (head,),
        durable_folder("stop-resume") as workspace,
        durable_folder("shell-ws") as elsewhere,
    ):
        env = {**user_env(Path(head.env["HOME"])), "RELAY_WORKSPACE": str(elsewhere)}  # this shell's: not the run's
        env = {key: value for key, value in env.items() if key not in ("RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI")}
        address, run_id = head.dashboard, f"stop-{uuid.uuid4().hex[:6]}"
        overrides = [f"run.workspace={workspace}", "train.steps=20000"]
        submitted = relay("submit", SMOKE, *overrides, "--run-id", run_id, "--address", address, env=env)
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        store = workspace / "artifacts"
        wait_for(
            lambda: ledger_status(store, run_id) == "RUNNING" or jobs_status(head, run_id) in jobs.TERMINAL_STATUSES,
            600,
            "the run to start its stages",
        )
        assert jobs_status(head, run_id) == "RUNNING", relay("logs", run_id, "--address", address, env=env).stdout

        stopped = relay("stop", run_id, "--address", address, env=env)
        assert stopped.returncode == 0, stopped.stderr[-3000:]
        assert stopped.stdout.splitlines() == [f"{run_id}: stop requested", f"{run_id}: STOPPED"], stopped.stdout
        assert f"waiting for job {run_id} to end (Ray sends its driver SIGTERM" in stopped.stderr
        way_on = f"`relay submit --resume {run_id} --address {address} --artifact-uri {store}`"
        assert way_on in stopped.stderr, stopped.stderr[-3000:]
        status = relay("status", run_id, "--address", address, env=env)
        assert status.stdout.strip() == "STOPPED" and way_on in status.stderr, status.stderr[-3000:]

        resumed = relay("submit", "--resume", run_id, "--address", address, "--artifact-uri", str(store), env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]  # was: "still running ...; stop it first"
        assert resumed.stdout.strip() == f"{run_id}-resume-2"
        wait_for(lambda: jobs_status(head, f"{run_id}-resume-2") != "PENDING", 300, "the resume's job to start")
        stopped = relay("stop", run_id, "--address", address, env=env)  # its newest job: the resume's
        assert stopped.returncode == 0 and f"{run_id}-resume-2: stop requested" in stopped.stdout, stopped.stderr


def jobs_status(head: RayCluster, job_id: str) -> str:
    """The job's status as Ray's own CLI-free client reads it (the token from the head's HOME)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.dashboard, headers=head.headers())
    return str(client.get_job_status(job_id).value)
