"""`relay submit --resume`, `relay stop` and `relay status` of cluster jobs, against small real HTTP servers that answer like Ray's
Jobs server (``test_cluster_submit_jobs_server``), and run records in a real store.

- A resume sent to another cluster while the cluster whose job last ran the run still ran it was sent anyway:
  two drivers of one ledger and MLflow run. That cluster is asked now, before the submit and inside the job.
- `relay status` of a run whose store came from the config read the store of this shell (said nothing), and the
  way on it printed named no store (the pasted command looked in the default one): the store is in the job's
  metadata, and every `relay submit --resume` line Relay prints names it.
- `relay stop` returned while Ray still showed the job RUNNING, so the resume typed next was refused: it waits now.
- A resume's store in a temporary folder was refused as "run.artifact_uri ... in the configuration" for --workspace.
- A sweep's continue command dropped --skip-resource-check and --num-gpus; --resume-sweep of a sweep that had
  finished sent a whole new job.
"""

from __future__ import annotations

import json
import logging
import shlex
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.cli.jobs import cluster
from orchestrator.cli.run import resume_guard
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, RAY_JOB_ENV, Ledger
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec
from tests.integration.cluster import durable_folder, free_port
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import (
    SMOKE,
    JobsServer,
    _handler,
    job,
    project,
    server,
)

__all__ = ["project", "server"]  # the fixtures, used by name below


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPECS = {"toy": PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})}


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A workspace outside /tmp (a cluster command refuses a temporary store), removed after the test."""
    with durable_folder("cli-jobs-fixes") as path:
        path.mkdir(parents=True)
        yield path


def recorded(workspace: Path, run_id: str, status: str, driver: dict[str, Any]) -> ArtifactStore:
    """Run ``run_id``'s record and ledger in ``workspace``'s store, its ledger's driver ``driver`` (a job's)."""
    store = ArtifactStore(str(workspace / "artifacts"))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(workspace)))
    save_run_record(store, run_id, config, "toy.yaml", [])
    Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}).write(status, {})
    ledger = workspace / "artifacts" / "runs" / run_id / "ledger.json"
    data = json.loads(ledger.read_text())
    data["driver"] = driver
    ledger.write_text(json.dumps(data))
    return store


def serve(state: JobsServer, handler: type) -> ThreadingHTTPServer:
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.address = f"http://127.0.0.1:{http.server_address[1]}"
    return http


@pytest.fixture
def old_cluster(server: JobsServer) -> Iterator[JobsServer]:
    """A second Jobs server: the cluster whose job last ran the run (``server`` is the one the resume is sent to)."""
    state = JobsServer()

    class OldHead(_handler(state)):
        def do_GET(self) -> None:
            if self.path == "/api/version":  # a Ray session of its own: another cluster than ``server``
                self._send(200, {"ray_version": "2.60.0", "version": "4", "session_name": "old-session"})
            else:
                super().do_GET()

    http = serve(state, OldHead)
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


def job_driver(address: str, job_id: str = "r1") -> dict[str, Any]:
    return {"host": "head-a", "pid": 4242, "job_id": job_id, "job_address": address}


def resume(target: JobsServer, workspace: Path, *extra: str) -> int:
    argv = ["submit", "--resume", "r1", "--address", target.address, "--workspace", str(workspace), *extra]
    return main(argv, pipelines=SPECS)


# --------------------------------------------------------------------------- 2: the cluster that last ran the run


def test_a_resume_sent_elsewhere_while_the_old_cluster_runs_the_run_is_refused(
    server: JobsServer, old_cluster: JobsServer, project: Path, workspace: Path, capsys
) -> None:
    recorded(workspace, "r1", "RUNNING", job_driver(old_cluster.address))
    old_cluster.jobs = [job("r1", "RUNNING")]
    assert resume(server, workspace) == 2
    err = capsys.readouterr().err
    assert f"run r1 is still running as job r1 (RUNNING) on the Ray cluster at {old_cluster.address}" in err
    assert f"`relay stop r1 --address {old_cluster.address}`" in err
    assert f"relay submit --resume r1 --address {server.address} --artifact-uri {workspace}/artifacts" in err
    assert server.submitted == [] and server.uploads == []


@pytest.mark.parametrize("status", ["STOPPED", "FAILED"])
def test_a_resume_sent_elsewhere_goes_on_once_the_old_clusters_job_ended(
    server: JobsServer, old_cluster: JobsServer, project: Path, workspace: Path, capsys, caplog, status: str
) -> None:
    recorded(workspace, "r1", "RUNNING", job_driver(old_cluster.address))
    old_cluster.jobs = [job("r1", status), job("r10", "RUNNING")]  # another run's job does not count
    caplog.set_level(logging.INFO, logger="relay")
    assert resume(server, workspace) == 0
    assert capsys.readouterr().out.strip() == "r1"
    assert f"its jobs on the Ray cluster at {old_cluster.address}, where it last ran, have ended" in caplog.text
    (request,) = server.submitted
    assert request["entrypoint"] == f"relay resume r1 --artifact-uri {workspace}/artifacts"


def test_a_resume_sent_elsewhere_goes_on_when_the_old_head_is_lost(
    server: JobsServer, project: Path, workspace: Path, caplog
) -> None:
    lost = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    recorded(workspace, "r1", "RUNNING", job_driver(lost))
    assert resume(server, workspace) == 0
    said = f"run r1 last ran as job r1 of the Ray cluster at {lost}, which does not answer: taken as lost"
    assert said in caplog.text
    assert len(server.submitted) == 1


def test_an_old_cluster_that_cannot_be_asked_is_refused_until_driver_gone(
    server: JobsServer, project: Path, workspace: Path, capsys, caplog
) -> None:
    """A cluster that answers but wants another token: a job of the run may run there, and nothing tells."""
    state = JobsServer()

    class TokenHandler(_handler(state)):
        def do_GET(self) -> None:
            if self.path == "/api/authentication_mode":
                self._send(200, {"authentication_mode": "token"})
            else:
                self._send(401, "Unauthorized")

    http = serve(state, TokenHandler)
    try:
        recorded(workspace, "r1", "RUNNING", job_driver(state.address))
        assert resume(server, workspace) == 2
        err = capsys.readouterr().err
        assert f"run r1 last ran as job r1 of the Ray cluster at {state.address}, which answers but cannot" in err
        assert f"relay submit --resume r1 --address {server.address} --artifact-uri {workspace}/artifacts" in err
        assert err.rstrip().endswith("--driver-gone") and server.submitted == []
        assert resume(server, workspace, "--driver-gone") == 0
        assert "taken to be gone (--driver-gone)" in caplog.text
        (request,) = server.submitted
        assert shlex.split(request["entrypoint"])[-1] == "--driver-gone"  # the job's resume does not ask either
    finally:
        http.shutdown()
        http.server_close()


def test_driver_gone_goes_with_resume_only(server: JobsServer, project: Path, capsys) -> None:
    argv = ["submit", str(SMOKE), "--driver-gone", "--address", server.address, "--workspace", "/mnt/relay-shared"]
    assert main(argv) == 2
    assert "--driver-gone: only with --resume RUN_ID" in capsys.readouterr().err
    assert server.submitted == []


def as_job(monkeypatch: pytest.MonkeyPatch, job_id: str, address: str) -> None:
    """This process as the entrypoint of job ``job_id`` that `relay submit --resume r1` sent to ``address``."""
    metadata = {"job_submission_id": job_id, "relay.run_id": "r1"}
    monkeypatch.setenv(RAY_JOB_ENV, json.dumps({"runtime_env": {}, "metadata": metadata}))
    monkeypatch.setenv(JOB_ADDRESS_ENV, address)


def test_inside_the_resume_job_the_cluster_that_last_ran_the_run_is_asked(
    server: JobsServer, old_cluster: JobsServer, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the submit did not see the store, the job's resume took the run over as its job, asking no one."""
    store = recorded(workspace, "r1", "RUNNING", job_driver(old_cluster.address))
    as_job(monkeypatch, "r1", server.address)
    old_cluster.jobs = [job("r1", "RUNNING")]
    with pytest.raises(
        ConfigError, match=f"still running as job r1 \\(RUNNING\\) on the Ray cluster at {old_cluster.address}"
    ):
        resume_guard.check_not_running(store, "r1")
    resume_guard.check_not_running(store, "r1", driver_gone=True)  # the submit's --driver-gone, passed on
    old_cluster.jobs = [job("r1", "STOPPED")]
    resume_guard.check_not_running(store, "r1")


def test_inside_the_resume_job_its_own_job_is_not_counted(
    server: JobsServer, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded cluster under another name (localhost) is this one: this job, RUNNING, is not a second driver."""
    other_name = server.address.replace("127.0.0.1", "localhost")
    store = recorded(workspace, "r1", "RUNNING", job_driver(other_name))
    as_job(monkeypatch, "r1-resume-2", server.address)
    server.jobs = [job("r1", "STOPPED"), job("r1-resume-2", "RUNNING")]
    resume_guard.check_not_running(store, "r1")


# --------------------------------------------------------------------------- 3, 4: the store a job's run wrote to


def test_status_reads_the_store_the_submit_resolved_and_its_way_on_names_it(
    server: JobsServer, project: Path, workspace: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store came from run.workspace (an override); the job's RELAY_WORKSPACE, this shell's, named another."""
    (project / "smoke.yaml").write_text(SMOKE.read_text())
    monkeypatch.setenv("RELAY_WORKSPACE", "/mnt/relay-shared")
    argv = ["submit", "smoke.yaml", f"run.workspace={workspace}", "--run-id", "r1", "--address", server.address]
    assert main([*argv, "--skip-resource-check"]) == 0
    (request,) = server.submitted
    assert request["metadata"]["relay.artifact_uri"] == f"{workspace}/artifacts"
    assert request["runtime_env"]["env_vars"]["RELAY_WORKSPACE"] == "/mnt/relay-shared"
    capsys.readouterr()

    recorded(workspace, "r1", "INTERRUPTED", job_driver(server.address))  # as its job's driver left it
    server.jobs = [
        {
            **job("r1", "STOPPED"),
            "metadata": request["metadata"],
            "runtime_env": {"env_vars": request["runtime_env"]["env_vars"]},
        }
    ]
    assert main(["status", "r1", "--address", server.address]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "STOPPED"
    way_on = f"`relay submit --resume r1 --address {server.address} --artifact-uri {workspace}/artifacts`"
    assert f"run r1 is INTERRUPTED, not finished: {way_on} continues it" in err, err


def test_the_resume_jobs_metadata_names_its_store(server: JobsServer, project: Path, capsys) -> None:
    argv = ["submit", "--resume", "r1", "--address", server.address, "--artifact-uri", "/mnt/relay-not-here"]
    assert main(argv) == 0
    assert server.submitted[0]["metadata"]["relay.artifact_uri"] == "/mnt/relay-not-here"


def test_the_runners_cluster_hint_names_the_store(workspace: Path) -> None:
    store = recorded(workspace, "r1", "RUNNING", job_driver("http://10.0.0.5:8265"))
    store.write_record("runs/r1/command.json", json.dumps({"driver": job_driver("http://10.0.0.5:8265")}).encode())
    hint = resume_guard.cluster_job_hint(store, "r1")
    assert (
        hint == f" (a cluster job: relay submit --resume r1 --address http://10.0.0.5:8265 --artifact-uri {store.uri})"
    )


# --------------------------------------------------------------------------- 5: relay stop waits for the job to end


@pytest.fixture
def stopping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[JobsServer]:
    """A Jobs server whose job, once asked to stop, reads RUNNING for a while, then STOPPED (as Ray's does while its
    driver exits); ``stop_after_s`` None: it never ends."""
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RELAY_WORKSPACE", "RELAY_ARTIFACT_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    state = JobsServer()
    state.stop_after_s = 1.5  # type: ignore[attr-defined]

    class Stopping(_handler(state)):
        def do_POST(self) -> None:
            if not self.path.endswith("/stop"):
                super().do_POST()
                return
            stopped = self.path.split("/")[3]
            running = any(row["submission_id"] == stopped and row["status"] == "RUNNING" for row in state.jobs)
            state.stopped.append(stopped)
            self._send(200, {"stopped": running})  # as Ray's: False for a job that has ended
            delay = state.stop_after_s  # type: ignore[attr-defined]
            if running and delay is not None:
                threading.Timer(delay, lambda: ended(state, stopped)).start()

    http = serve(state, Stopping)
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


def ended(state: JobsServer, job_id: str) -> None:
    state.jobs = [{**row, "status": "STOPPED"} if row["submission_id"] == job_id else row for row in state.jobs]


def test_stop_waits_for_the_job_to_end_so_the_resume_right_after_is_sent(stopping: JobsServer, capsys) -> None:
    stopping.jobs = [job("r1", "RUNNING")]
    assert main(["stop", "r1", "--address", stopping.address]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["r1: stop requested", "r1: STOPPED"]
    assert "relay: waiting for job r1 to end (Ray sends its driver SIGTERM, then SIGKILL after 3 s" in err
    argv = ["submit", "--resume", "r1", "--address", stopping.address, "--artifact-uri", "/mnt/relay-not-here"]
    assert main(argv) == 0  # was: "run r1 is still running as job r1 (RUNNING); stop it first"
    assert capsys.readouterr().out.strip() == "r1-resume-2"


def test_stop_of_a_sweep_says_its_own_signal_and_wait(stopping: JobsServer, capsys) -> None:
    env = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}  # what a sweep's job sets
    stopping.jobs = [{**job("sweep-s", "RUNNING"), "runtime_env": {"env_vars": env}}]
    assert main(["stop", "sweep-s", "--address", stopping.address]) == 0
    out, err = capsys.readouterr()
    assert "Ray sends its driver SIGINT, then SIGKILL after 60 s" in err and out.endswith("sweep-s: STOPPED\n")


def test_stop_of_a_job_that_does_not_end_in_time_says_so_and_fails(
    stopping: JobsServer, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "STOP_MARGIN_S", 0.5)
    monkeypatch.setattr(cluster, "STOP_SAID_EVERY_S", 0.2)
    stopping.stop_after_s = None  # type: ignore[attr-defined]
    stopping.jobs = [{**job("r1", "RUNNING"), "runtime_env": {"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "0"}}}]
    assert main(["stop", "r1", "--address", stopping.address]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "r1: stop requested"
    assert "relay: job r1 is still RUNNING after" in err  # said while it waited
    assert "relay: job r1 is still RUNNING 0.5 s after its stop was requested; the stop stays requested" in err


def test_ctrl_c_while_stop_waits_leaves_the_stop_requested(
    stopping: JobsServer, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopping.stop_after_s = None  # type: ignore[attr-defined]
    stopping.jobs = [job("r1", "RUNNING")]

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster.time, "sleep", ctrl_c)
    assert main(["stop", "r1", "--address", stopping.address]) == 130
    err = capsys.readouterr().err
    assert "relay: stopped waiting; the stop of job r1 stays requested and Ray ends it on the cluster" in err
    assert stopping.stopped == ["r1"] and "Traceback" not in err


def test_stop_of_a_job_that_had_ended_says_its_status(stopping: JobsServer, capsys) -> None:
    """Ray's stop answers False for a job that already ended: nothing to wait for."""
    stopping.jobs = [job("r1", "FAILED")]
    assert main(["stop", "r1", "--address", stopping.address]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "r1: already finished (FAILED)" and "waiting" not in err


# --------------------------------------------------------------------------- 9: the resume's store, named as given


@pytest.mark.parametrize(
    ("flags", "env", "key"),
    [
        (["--workspace", "/tmp/rv_nonexist"], {}, "--workspace"),
        (["--artifact-uri", "/tmp/rv_nonexist/artifacts"], {}, "--artifact-uri"),
        ([], {"RELAY_WORKSPACE": "/tmp/rv_nonexist"}, "$RELAY_WORKSPACE"),
    ],
)
def test_a_resumes_store_in_a_temporary_folder_names_the_flag_that_chose_it(
    capsys, monkeypatch: pytest.MonkeyPatch, flags: list[str], env: dict[str, str], key: str
) -> None:
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["submit", "--resume", "foo", *flags, "--address", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s) in the command line:" in err and "configuration" not in err
    assert f"  - {key}: the artifact store /tmp/rv_nonexist/artifacts (the run's record and stage outputs)" in err
    assert "run.artifact_uri" not in err
    assert "or resume the run on this machine: relay resume foo" in err


def test_a_seen_resumes_store_in_a_temporary_folder_names_the_flag_too(tmp_path: Path, capsys) -> None:
    recorded(tmp_path, "r1", "INTERRUPTED", job_driver("http://10.0.0.5:8265"))
    argv = ["submit", "--resume", "r1", "--workspace", str(tmp_path), "--address", "http://127.0.0.1:1"]
    assert main(argv, pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert f"  - --workspace: the artifact store {tmp_path}/artifacts (the run's record" in err
    assert "run.artifact_uri" not in err and "problem(s) in the command line" in err


# --------------------------------------------------------------------------- 10: a sweep's continue command


SHARED = "/mnt/relay-shared"


def sweep_file(project: Path) -> str:
    (project / "smoke.yaml").write_text(SMOKE.read_text())
    return "smoke.yaml"


def test_the_continue_command_keeps_the_resource_flags(server: JobsServer, project: Path, capsys) -> None:
    argv = ["submit", sweep_file(project), "--tune", "--workspace", SHARED, "--num-gpus", "0.5"]
    assert main([*argv, "--skip-resource-check", "--address", server.address]) == 0
    (request,) = server.submitted
    again = (
        f"relay submit smoke.yaml --tune --resume-sweep --workspace {SHARED} --num-gpus 0.5 --skip-resource-check "
        f"--address {server.address}"
    )
    assert (
        request["metadata"]["relay.resume"] == again == request["runtime_env"]["env_vars"]["RELAY_SWEEP_RESUME_COMMAND"]
    )
    assert request["metadata"]["relay.output"] == f"{SHARED}/tune/smoke-sweep"


def test_resume_sweep_of_a_finished_sweep_submits_nothing(server: JobsServer, project: Path, capsys) -> None:
    output = f"{SHARED}/sweeps/s1"  # not on this machine: only the cluster's jobs tell
    done = {"relay.sweep": "smoke-sweep", "relay.output": output}
    server.jobs = [{**job("sweep-smoke-sweep", "STOPPED"), "metadata": done}]
    server.jobs.append({**job("sweep-smoke-sweep-resume-2", "SUCCEEDED"), "metadata": done})
    argv = ["submit", sweep_file(project), "--tune", "--resume-sweep", "--output", output, "--workspace", SHARED]
    assert main([*argv, "--address", server.address]) == 0  # as `relay submit --resume` of a finished run
    out, err = capsys.readouterr()
    assert out == ""  # no job id for a script to read
    assert "sweep smoke-sweep finished (its job sweep-smoke-sweep-resume-2 SUCCEEDED); nothing to resume, so no " in err
    assert server.submitted == [] and server.uploads == []

    elsewhere = f"{SHARED}/sweeps/s2"  # the same name in another folder: that sweep's jobs say nothing of this one
    argv[argv.index(output)] = elsewhere
    assert main([*argv, "--address", server.address, "--skip-resource-check"]) == 0
    assert capsys.readouterr().out.strip() == "sweep-smoke-sweep-resume-3"
    assert len(server.submitted) == 1


def test_the_stops_wait_is_the_jobs_own() -> None:
    """Ray's wait before SIGKILL, as the job set it (a sweep's 60 s), else Ray's default; the margin comes on top."""
    assert cluster.stop_grace_s({}) == 3.0
    assert cluster.stop_grace_s({"RAY_JOB_STOP_WAIT_TIME_S": "60"}) == 60.0
    assert cluster.stop_grace_s({"RAY_JOB_STOP_WAIT_TIME_S": "soon"}) == 3.0


def test_stop_of_a_job_ray_has_nothing_of_yet_says_to_try_again(stopping: JobsServer, capsys) -> None:
    """A PENDING job whose supervisor Ray does not find: "already finished" would be wrong."""
    stopping.jobs = [job("r1", "PENDING")]
    assert main(["stop", "r1", "--address", stopping.address]) == 1
    err = capsys.readouterr().err
    assert (
        f"relay: job r1 is PENDING, but Ray found nothing of it to stop yet: run `relay stop r1 --address {stopping.address}` again"
        in err
    )


# --------------------------------------------------------------------------- a sweep file outside the upload


def test_a_sweep_file_the_upload_would_not_hold_goes_with_its_job(server: JobsServer, project: Path, capsys) -> None:
    """As a run's (``jobs.submit.config_job``): `relay submit ../x.yaml --tune` was refused, and before that sent by a
    path the job could not read."""
    outside = project.parent / "sweeps" / "smoke.yaml"
    outside.parent.mkdir()
    outside.write_text(SMOKE.read_text())
    argv = ["submit", str(outside), "--tune", "--workspace", SHARED, "--skip-resource-check"]
    assert main([*argv, "--address", server.address]) == 0
    (request,) = server.submitted
    assert request["runtime_env"]["env_vars"]["RELAY_SUBMITTED_CONFIG"] == SMOKE.read_text()
    assert "exec relay tune" in request["entrypoint"] and str(outside) not in request["entrypoint"]
