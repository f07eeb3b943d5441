"""Relay against a real `mlflow server` over http: a server killed mid-run, `relay ui`, MLflow's stdout lines.

A tester found that with the server SIGKILLed the run hung for about four minutes per queued
MLflow call (MLflow's own HTTP retries), that tracking.strict did not stop the run in time, that
`relay ui` on an http store crashed, and that MLflow printed "View run" lines into Relay's output.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.engine.records import StageRecord
from orchestrator.errors import TrackingError
from orchestrator.tracking.background import BackgroundTracker
from orchestrator.tracking.common import CLIENT_ENV_DEFAULTS
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.integration.test_ui_server import healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(26700, 26800)  # this suite's own range
GAVE_UP_WITHIN_S = 60  # Relay's client settings give up on a dead server in seconds; MLflow's own took ~4 min a call


def free_port(ports: range = PORTS) -> int:
    """A port of ``ports`` (a suite's own range) nothing listens on or holds."""
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


class Server:
    """A real `mlflow server` on a sqlite store, in its own process group so it can be killed whole."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = (folder / "server.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 300
        while not healthy(self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the server and everything it started, as the tester did."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(60)
        self.log.close()


@pytest.fixture
def server(tmp_path):
    started = Server(tmp_path)
    yield started
    started.kill()


@pytest.fixture(autouse=True)
def mlflow_client_env(monkeypatch):
    """Start each test without Relay's client settings, and take away those it sets (they are process-wide)."""
    for key in CLIENT_ENV_DEFAULTS:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def record(stage: str) -> StageRecord:
    return StageRecord(
        stage=stage, generation=0, fingerprint=f"fp-{stage}", cache_hit=False, status="FINISHED", metrics={"m": 1.0}
    )


def test_a_killed_server_costs_one_failure_not_minutes_per_queued_call(server, caplog):
    tracker = BackgroundTracker(MlflowTracker(server.uri, "relay"))
    tracker.start_pipeline("run-k", "toy", {"seed": 0}, resume=False)
    assert tracker.parent_run_id is not None
    server.kill()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking"):
        for stage in ("g00/train", "g00/label", "g00/evaluate", "g01/train"):
            tracker.stage_started(stage, 0)
            tracker.stage_finished(record(stage))
        tracker.close("FINISHED")
        tracker.join()
    assert time.monotonic() - started < GAVE_UP_WITHIN_S
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1 and "incomplete" in said[0]


def test_strict_tracking_stops_the_run_at_its_next_call_when_the_server_dies(server):
    tracker = BackgroundTracker(MlflowTracker(server.uri, "relay", strict=True))
    tracker.start_pipeline("run-s", "toy", {}, resume=False)
    tracker.flush()
    server.kill()
    started = time.monotonic()
    tracker.stage_started("g00/train", 0)  # fails on the tracker's thread
    with pytest.raises(TrackingError, match=f"the tracking store {server.uri} is unreachable"):
        while time.monotonic() - started < GAVE_UP_WITHIN_S:  # the runner's next calls: one of them raises
            tracker.stage_finished(record("g00/train"))
            time.sleep(0.5)
    tracker.end_pipeline("FAILED")
    assert time.monotonic() - started < GAVE_UP_WITHIN_S


def test_relay_ui_on_a_tracking_server_prints_its_run_and_starts_nothing(server):
    tracker = MlflowTracker(server.uri, "relay")
    tracker.start_pipeline("run-ui", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
    command = [sys.executable, "-m", "orchestrator.cli", "ui", "--port", str(free_port())]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    url = f"{server.uri}/#/experiments/"
    assert url in done.stdout and f"/runs/{tracker.parent_run_id}?workflowType=machine_learning" in done.stdout


def test_mlflow_prints_nothing_to_relays_stdout(server):
    script = (
        "from orchestrator.tracking.mlflow_tracker import MlflowTracker\n"
        f"t = MlflowTracker({server.uri!r}, 'relay')\n"
        "t.start_pipeline('run-quiet', 'toy', {}, resume=False)\n"
        "t.stage_started('g00/train', 0)\n"
        "from orchestrator.engine.records import StageRecord\n"
        "t.stage_finished(StageRecord(stage='g00/train', generation=0, fingerprint='f', cache_hit=False, status='FINISHED'))\n"
        "t.end_pipeline('FINISHED')\n"
        "print('relay done')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "relay done\n"


def test_the_end_of_run_hint_links_the_run_page_on_the_server(server, capsys):
    """The server's root opens MLflow's GenAI home, not the run: the hint names the run's own page."""
    from orchestrator.cli.run.closing_lines import print_browse_hint
    from orchestrator.config import load_yaml, validate_config
    from pipelines.builders import crest

    tracker = MlflowTracker(server.uri, "relay")
    tracker.start_pipeline("run-hint", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    data = {**load_yaml(ROOT / "pipelines" / "configs" / "smoke.yaml"), "tracking": {"uri": server.uri}}
    print_browse_hint(validate_config(crest.CrestConfig, data), server.uri, tracker.parent_run_id, "run-hint")
    out = capsys.readouterr().out
    assert f"{server.uri}/#/experiments/" in out
    assert f"/runs/{tracker.parent_run_id}?workflowType=machine_learning (run run-hint)" in out
