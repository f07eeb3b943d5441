"""`relay submit` against a small real HTTP server that answers like Ray's Jobs server.

The server keeps what the client sent (the uploaded zip, the job request), so a test can
check what would have reached the cluster: the job's environment, what the upload left out,
and that a refused submission sent nothing. It streams a job's log over a websocket as Ray's
``/api/jobs/ID/logs/tail`` does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import struct
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator import jobs
from orchestrator.cli import main
from orchestrator.cli.jobs.run_job import check_run_id_unused
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, record_path
from orchestrator.errors import ConfigError, InputError
from orchestrator.jobs.connection import JOBS_SDK_LOGGER

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


class JobsServer:
    """What the fake Jobs server answers (``jobs``, ``upload_status``) and what it was sent."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.upload_status = 200
        self.uploads: list[bytes] = []
        self.submitted: list[dict[str, Any]] = []
        self.address = ""
        self.usage: dict[str, list[float]] | None = None  # /api/cluster_status's resource usage, None: 404
        self.stopped: list[str] = []  # the jobs asked to stop
        self.failed_log: list[str] | None = None  # a submitted job FAILED at once after printing these chunks
        self.nodes: list[dict[str, float]] | None = None  # the alive nodes' resources_total, None: 404


WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's constant for Sec-WebSocket-Accept


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final websocket frame, as a server sends it (payloads under 64 KiB)."""
    size = bytes([len(payload)]) if len(payload) < 126 else bytes([126]) + struct.pack("!H", len(payload))
    return bytes([0x80 | opcode]) + size + payload


def ray_failure_message(log: list[str]) -> str:
    """The message Ray's JobSupervisor gives a job whose entrypoint exits 1: it ends with the log's last 10 lines."""
    tail = "".join(log).splitlines(keepends=True)[-10:]
    return "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n" + (
        "".join(tail)
    )


def _handler(state: JobsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: Any) -> None:
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if self.path == "/api/version":
                self._send(200, {"ray_version": "2.60.0", "version": "4", "session_name": "s"})
            elif self.path == "/api/jobs/":
                self._send(200, state.jobs)
            elif self.path.endswith("/logs/tail"):
                self._stream_log()
            elif self.path.startswith("/api/jobs/") and self.path.count("/") == 3:  # one job's details
                found = [j for j in state.jobs if j["submission_id"] == self.path.rsplit("/", 1)[1]]
                if found:
                    self._send(200, found[0])
                else:
                    self._send(404, "Job does not exist")
            elif self.path.startswith("/api/v0/nodes") and state.nodes is not None:  # the state API's node list
                rows = [{"state": "ALIVE", "resources_total": node} for node in state.nodes]
                self._send(200, {"result": True, "data": {"result": {"result": rows}}})
            elif self.path == "/api/cluster_status" and state.usage is not None:
                report = {"loadMetricsReport": {"usage": state.usage}}
                self._send(200, {"result": True, "data": {"clusterStatus": report}})
            else:
                self._send(404, "not found")

        def _stream_log(self) -> None:
            """The whole log, then a normal close, as Ray's tail does for a job that has ended."""
            key = self.headers["Sec-WebSocket-Key"] + WEBSOCKET_GUID
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            for chunk in state.failed_log or []:
                self.wfile.write(ws_frame(0x1, chunk.encode()))
            self.wfile.write(ws_frame(0x8, struct.pack("!H", 1000)))
            self.wfile.flush()
            self.connection.settimeout(5)
            self.rfile.read(8)  # the client's close frame: header, mask, code

        def do_PUT(self) -> None:
            data = self._body()
            if state.upload_status != 200:
                self._send(state.upload_status, "413: Maximum request body size 104857600 exceeded")
                return
            state.uploads.append(data)
            self._send(200, "ok")

        def do_POST(self) -> None:
            if self.path.endswith("/stop"):  # /api/jobs/ID/stop: the job ends, as `relay stop` waits for it to
                stopped = self.path.split("/")[3]
                state.stopped.append(stopped)
                state.jobs = [{**j, "status": "STOPPED"} if j["submission_id"] == stopped else j for j in state.jobs]
                self._send(200, {"stopped": True})
                return
            request = json.loads(self._body())
            state.submitted.append(request)
            submission_id = request.get("submission_id") or "raysubmit_1"
            if state.failed_log is not None:
                state.jobs.append({**job(submission_id, "FAILED"), "message": ray_failure_message(state.failed_log)})
            self._send(200, {"job_id": None, "submission_id": submission_id})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[JobsServer]:
    """A Jobs server on a free port, and a shell without Ray or Relay settings of its own."""
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR", "RELAY_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    state = JobsServer()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.address = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder `relay submit` runs from: code, plus a workspace and Ray's temp folder inside it."""
    folder = tmp_path / "project"
    (folder / "src" / "shared").mkdir(parents=True)
    (folder / "src" / "shared" / "code.py").write_text("x = 1\n")
    (folder / "shared" / "artifacts").mkdir(parents=True)
    (folder / "shared" / "artifacts" / "big.bin").write_bytes(b"0" * 1000)
    (folder / "raytmp").mkdir()
    (folder / "raytmp" / "session.log").write_text("log\n")
    monkeypatch.chdir(folder)
    return folder


def job(submission_id: str, status: str) -> dict[str, Any]:
    return {"type": "SUBMISSION", "submission_id": submission_id, "status": status, "entrypoint": "relay run x"}


# --------------------------------------------------------------------------- --workspace / --artifact-uri


def test_workspace_flag_of_a_new_run_reaches_the_job(server: JobsServer, project: Path, capsys) -> None:
    argv = ["submit", str(SMOKE), "--run-id", "r1", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 0
    assert capsys.readouterr().out.strip() == "r1"
    (request,) = server.submitted
    assert request["runtime_env"]["env_vars"]["RELAY_WORKSPACE"] == "/mnt/relay-shared"


def test_artifact_uri_flag_of_a_new_run_is_the_jobs_store(server: JobsServer, project: Path, capsys) -> None:
    argv = ["submit", str(SMOKE), "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--artifact-uri", "/mnt/relay-store"]) == 2  # the tracking store is still relative
    err = capsys.readouterr().err
    assert "tracking.uri" in err and "run.artifact_uri" not in err, "the flag's store passed the check"
    assert server.submitted == []
    assert main([*argv, "--artifact-uri", "/mnt/relay-store", "--workspace", "/mnt/relay-shared"]) == 0
    env = server.submitted[0]["runtime_env"]["env_vars"]
    assert env["RELAY_ARTIFACT_URI"] == "/mnt/relay-store" and env["RELAY_WORKSPACE"] == "/mnt/relay-shared"


def test_a_relative_workspace_flag_is_refused_before_anything_is_sent(
    server: JobsServer, project: Path, capsys
) -> None:
    argv = ["submit", str(SMOKE), "--address", server.address, "--workspace", "ws"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ws/artifacts would be a relative path" in err and "Traceback" not in err
    assert server.submitted == [] and server.uploads == []


# --------------------------------------------------------------------------- the upload


def uploaded_names(server: JobsServer) -> set[str]:
    (data,) = server.uploads
    return set(zipfile.ZipFile(io.BytesIO(data)).namelist())


def test_the_workspace_and_ray_tmpdir_inside_the_project_are_not_uploaded(
    server: JobsServer, project: Path, monkeypatch
) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(project / "raytmp"))
    jobs.submit_entrypoint(server.address, "echo hi", str(project), skip=[str(project / "shared")])
    names = uploaded_names(server)
    assert any(name.endswith("src/shared/code.py") for name in names), "a same-named code folder stays"
    assert not any("artifacts/big.bin" in name or "session.log" in name for name in names)
    assert {"/shared", "/raytmp"} <= set(server.submitted[0]["runtime_env"]["excludes"])


def test_folders_outside_the_project_add_no_excludes(tmp_path: Path) -> None:
    excludes = jobs.inside_excludes(str(tmp_path / "p"), [str(tmp_path / "ws"), str(tmp_path / "p"), None])
    assert excludes == []


def test_an_upload_over_rays_limit_says_what_to_move(server: JobsServer, project: Path) -> None:
    server.upload_status = 413
    with pytest.raises(jobs.JobsError) as info:
        jobs.submit_entrypoint(server.address, "echo hi", str(project))
    message = str(info.value)
    assert f"the upload of {project} is over Ray's 100 MiB limit" in message
    assert "move data/workspaces out of it" in message


# --------------------------------------------------------------------------- --resume of a running run


@pytest.mark.parametrize("running", ["r1", "r1-resume-2"])
@pytest.mark.parametrize("status", ["PENDING", "RUNNING"])
def test_resume_of_a_run_still_running_is_refused(
    server: JobsServer, project: Path, capsys, running: str, status: str
) -> None:
    server.jobs = [job("r1", "FAILED"), job(running, status)]
    argv = ["submit", "--resume", "r1", "--address", server.address, "--artifact-uri", "/mnt/relay-not-here"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"run r1 is still running as job {running}" in err
    on = f"--address {server.address}"  # every command it names reaches the cluster the user named
    assert f"`relay stop {running} {on}`" in err and f"`relay logs -f {running} {on}`" in err
    assert "Traceback" not in err and server.submitted == [] and server.uploads == []


def test_resume_of_a_finished_run_takes_the_next_free_id(server: JobsServer, project: Path, capsys) -> None:
    server.jobs = [job("r1", "FAILED"), job("r10", "RUNNING")]  # another run's job does not count
    argv = ["submit", "--resume", "r1", "--address", server.address, "--artifact-uri", "/mnt/relay-not-here"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "r1-resume-2"
    assert server.submitted[0]["submission_id"] == "r1-resume-2"


def test_status_and_stop_of_a_resumed_run_id_act_on_its_newest_job(server: JobsServer, capsys) -> None:
    """`relay stop r1` said "already finished" while the resume, job r1-resume-2, trained on."""
    server.jobs = [
        job("r1", "STOPPED"),
        job("r1-resume-3", "RUNNING"),
        job("r1-resume-2", "FAILED"),
        job("r10", "RUNNING"),
    ]
    assert main(["status", "r1", "--address", server.address]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "RUNNING" and "r1: its newest job is r1-resume-3 (a later job of it)" in err
    assert main(["stop", "r1", "--address", server.address]) == 0
    assert server.stopped == ["r1-resume-3"] and "r1-resume-3: stop requested" in capsys.readouterr().out
    assert main(["status", "r1-resume-2", "--address", server.address]) == 0  # a job named exactly is that job
    assert capsys.readouterr().out.strip() == "FAILED"
    assert main(["status", "nope", "--address", server.address]) == 2  # unknown, like `relay resume nope`
    assert "no job 'nope'" in capsys.readouterr().err


def test_a_running_job_error_is_bad_input() -> None:
    with pytest.raises(InputError):
        jobs.check_no_active_job([{"id": "r1", "status": "RUNNING"}], "r1")
    jobs.check_no_active_job([{"id": "r1", "status": "SUCCEEDED"}, {"id": "r1-resume-x", "status": "RUNNING"}], "r1")


# --------------------------------------------------------------------------- --run-id already in the store


def test_a_run_id_the_visible_store_holds_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    store.write_record(record_path("r1", CONFIG_FILE), b"pipeline: crest\n")
    with pytest.raises(ConfigError, match="a run 'r1' already exists"):
        check_run_id_unused(store.uri, "r1")
    check_run_id_unused(store.uri, "r2")
    check_run_id_unused(str(tmp_path / "not-mounted-here"), "r1")  # the cluster's mount: checked there


def test_submit_with_a_taken_run_id_sends_nothing(server: JobsServer, project: Path, capsys, monkeypatch) -> None:
    """Through the CLI: the store is durable only outside /tmp, so the refusal is read from the message."""
    store = ArtifactStore(str(project / "store"))
    store.write_record(record_path("r1", CONFIG_FILE), b"pipeline: crest\n")
    monkeypatch.setattr(
        "orchestrator.cli.run.run_locations.durability_problems", lambda locations: []
    )  # pytest's tmp_path is under /tmp, which the durability check refuses on purpose
    argv = ["submit", str(SMOKE), "--run-id", "r1", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--artifact-uri", str(project / "store"), "--workspace", "/mnt/relay-shared"]) == 2
    assert "a run 'r1' already exists" in capsys.readouterr().err
    assert server.submitted == []


# --------------------------------------------------------------------------- resources


def test_a_cluster_that_has_not_reported_its_nodes_yet_is_waited_for(server: JobsServer, project: Path) -> None:
    """Right after `ray start` the dashboard reports no node: a submit then said the cluster had 0 CPU (exit 1)."""
    server.usage = {}
    threading.Timer(2.0, lambda: setattr(server, "usage", {"CPU": [0.0, 2.0]})).start()
    argv = ["submit", str(SMOKE), "--address", server.address, "--workspace", "/mnt/relay-shared"]
    assert main(argv) == 0
    assert len(server.submitted) == 1


def test_a_stage_the_cluster_cannot_start_is_refused_before_anything_is_sent(
    server: JobsServer, project: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More CPUs than the cluster has, or a custom resource no node has, would leave the job RUNNING behind
    Ray's infeasible warnings forever; --skip-resource-check lets an autoscaling cluster take it."""
    monkeypatch.setattr(jobs.capacity, "NODES_REPORT_WAIT_S", 0)  # short for good: said at once here
    server.usage = {"CPU": [0.0, 4.0], "memory": [0.0, 8e9]}
    argv = ["submit", str(SMOKE), "--address", server.address, "--workspace", "/mnt/relay-shared"]
    assert main([*argv, "resources.train.num_cpus=6"]) == 2  # bad input: nothing was sent
    err = capsys.readouterr().err
    assert "has 4 CPU" in err and "asks for 6 CPU" in err and "--skip-resource-check" in err
    assert main([*argv, "resources.train.custom={ssd: 1}"]) == 2
    assert "has 0 ssd" in capsys.readouterr().err
    assert server.submitted == [] and server.uploads == []
    assert main([*argv, "resources.train.num_cpus=4"]) == 0  # fits: sent
    assert main([*argv, "resources.train.num_cpus=6", "--skip-resource-check"]) == 0
    assert len(server.submitted) == 2


# --------------------------------------------------------------------------- relay jobs


def test_relay_jobs_lists_submitted_jobs_under_a_header_and_counts_drivers(server: JobsServer, capsys) -> None:
    """A `relay tune --address` driver showed as job 08000000 with no entrypoint, in rows without a header."""
    server.jobs = [
        {**job("r1", "SUCCEEDED"), "start_time": 1_700_000_000_000, "metadata": {"relay.pipeline": "crest"}},
        {"type": "DRIVER", "job_id": "08000000", "submission_id": None, "status": "RUNNING", "entrypoint": ""},
        {**job("smoke-20250101-120000-ab12", "RUNNING"), "start_time": 1_700_000_100_000},
    ]
    assert main(["jobs", "--address", server.address]) == 0
    header, rule, *rows, note = capsys.readouterr().out.splitlines()
    assert header.split() == ["job", "id", "status", "started", "pipeline", "entrypoint"] and set(rule) == {"-", " "}
    assert [row.split()[:4] for row in rows] == [
        ["r1", "SUCCEEDED", "2023-11-14T22:13:20+00:00", "crest"],
        ["smoke-20250101-120000-ab12", "RUNNING", "2023-11-14T22:15:00+00:00", "-"],
    ]
    for column in ("status", "started", "pipeline", "entrypoint"):  # each cell starts under its column's name
        at = header.index(column)
        assert all(row[at - 1] == " " and row[at] != " " for row in rows), column
    assert "08000000" not in "\n".join(rows)
    assert note.startswith("not listed: 1 Ray driver that connected directly")


def test_relay_jobs_shows_a_sent_config_as_the_file_the_user_submitted(
    server: JobsServer, tmp_path: Path, project: Path, capsys
) -> None:
    """A config outside the upload goes with the job as text; the job's entrypoint writes it to a temp folder first."""
    outside = tmp_path / "elsewhere" / "smoke.yaml"
    outside.parent.mkdir()
    outside.write_text(SMOKE.read_text())
    argv = ["submit", str(outside), "--run-id", "r1", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 0
    (request,) = server.submitted
    assert request["entrypoint"].startswith("folder=$(mktemp")
    server.jobs = [{**job("r1", "RUNNING"), "entrypoint": request["entrypoint"], "runtime_env": request["runtime_env"]}]
    capsys.readouterr()
    assert main(["jobs", "--address", server.address]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert row[header.index("entrypoint") :] == f"relay run {outside} --run-id r1"


def test_relay_jobs_of_a_cluster_with_only_drivers_says_there_is_no_job(server: JobsServer, capsys) -> None:
    server.jobs = [{"type": "DRIVER", "job_id": "08000000", "status": "RUNNING", "entrypoint": ""}] * 2
    assert main(["jobs", "--address", server.address]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("no jobs on this cluster yet") and second.startswith("not listed: 2 Ray drivers")
    server.jobs = []
    assert main(["jobs", "--address", server.address]) == 0
    assert capsys.readouterr().out.startswith("no jobs on this cluster yet: submit one with `relay submit CONFIG")


# --------------------------------------------------------------------------- relay submit --wait


def test_a_failed_job_followed_to_its_end_prints_its_log_once(server: JobsServer, project: Path, capsys) -> None:
    """Ray's message of a failed entrypoint ends with the log's last 10 lines: `--wait` printed a short log twice."""
    server.failed_log = ["relay: run r1 starts\n", "Traceback (most recent call last):\nValueError: loss is nan\n"]
    argv = ["submit", str(SMOKE), "--run-id", "r1", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared", "--wait"]) == 1
    out, err = capsys.readouterr()
    assert out == "r1\n" + "".join(server.failed_log)  # the log once, as it came
    assert "run r1 starts" not in err and "loss is nan" not in err, "the failure line repeated the log"
    assert err.splitlines()[-1] == (
        "relay: job r1 FAILED: Job entrypoint command failed with exit code 1; see `relay logs r1`"
    )
    # Ray's Jobs SDK sets its own logger to INFO ("WebSocket closed for job r1 with close code 1000"
    # under the log); Relay sets it back to WARNING
    assert not logging.getLogger(JOBS_SDK_LOGGER).isEnabledFor(logging.INFO)
