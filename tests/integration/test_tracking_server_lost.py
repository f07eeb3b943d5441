"""`relay run` whose real `mlflow server` is SIGKILLed mid-run, then started again: the gap is said, and filled.

Before the fix, with the server killed during g00/train, the run ended exit 0 with "Browse the generations in MLflow"
pointing at a parent with no metrics that stayed RUNNING once the server was back, and `relay generations RUN` printed
an empty table with exit 0 and no note; `relay resume RUN` filled the record in, but nothing said so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.tracking.common import CLIENT_ENV_DEFAULTS
from tests.integration.relay_cli import own_name
from tests.integration.test_tracking_server import free_port
from tests.integration.test_ui_server import healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
PORTS = range(26800, 26850)  # this suite's own range
RUN = "lost-run"


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """A real `mlflow server` on ``folder``'s sqlite store, in its own process group so it can be killed whole."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(folder / "art"), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with (folder / f"server-{time.monotonic_ns()}.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--workers", "1"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while not healthy(port):
        assert process.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    return process


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the server and everything it started, as `kill -9` on its process group does."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(60)


@pytest.fixture
def servers(tmp_path):
    """The servers a test starts (killed at the end), and its folder."""
    (tmp_path / "server").mkdir()
    started: list[subprocess.Popen] = []
    yield started, tmp_path / "server"
    for process in started:
        kill(process)


def relay_env(workspace: Path, uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_DEFAULTS}  # Relay's own client settings
    return {**env, "RELAY_WORKSPACE": str(workspace), "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}


def relay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def stage_run_open(client: MlflowClient, stage: str) -> bool:
    """Whether the server holds ``stage``'s run of RUN, still RUNNING (the stage is under way)."""
    experiment = client.get_experiment_by_name("relay")
    if experiment is None:
        return False
    query = f"tags.`relay.pipeline_run` = '{RUN}' and tags.`relay.stage` = '{stage}'"
    return any(run.info.status == "RUNNING" for run in client.search_runs([experiment.experiment_id], query))


def runs_of(client: MlflowClient) -> list:
    """Every MLflow run of RUN (a stage cut off and tracked again on resume has two)."""
    experiment = client.get_experiment_by_name("relay")
    return client.search_runs([experiment.experiment_id], f"tags.`relay.pipeline_run` = '{RUN}'")


def test_a_server_killed_mid_run_is_said_and_resume_fills_the_record_in(servers, tmp_path):
    started, folder = servers
    port = free_port(PORTS)
    uri = f"http://127.0.0.1:{port}"
    started.append(start_server(folder, port))
    env = relay_env(tmp_path / "ws", uri)
    out, err = (tmp_path / "run.out").open("w"), (tmp_path / "run.err").open("w")
    command = [sys.executable, "-m", "orchestrator.cli", "run", SMOKE, "train.steps=600", "--run-id", RUN]
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)

    client = MlflowClient(uri)
    deadline = time.monotonic() + 600
    while not stage_run_open(client, "g00/train"):  # the server has g00/train's run: kill it while it trains
        assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "run.err").read_text()
        time.sleep(0.5)
    kill(started.pop())
    assert driver.wait(600) == 0, (tmp_path / "run.err").read_text()
    out.close()
    err.close()

    said = (tmp_path / "run.out").read_text()
    found = re.search(
        r"The MLflow record of run lost-run is incomplete: the tracking store \S+ stopped answering at (\S+),", said
    )
    assert found, said
    assert f"relay resume {RUN}" in said and "Browse the generations" not in said
    lost_at = found.group(1)
    offline = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")  # what the server had when it died
    running = {own_name(run) for run in runs_of(offline) if run.info.status == "RUNNING"}
    assert {RUN, lost_at} <= running, "the parent and the stage named were cut off"

    started.append(start_server(folder, port))  # the store answers again, at the same address
    shown = relay("generations", RUN, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"Run {RUN}'s MLflow record is incomplete: the tracking store stopped answering at {lost_at}" in shown.stdout
    assert f"relay resume {RUN}" in shown.stdout

    resumed = relay("resume", RUN, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "Browse the generations" in resumed.stdout and "incomplete" not in resumed.stdout
    filled = runs_of(client)
    assert not [run.info.run_name for run in filled if run.info.status == "RUNNING"], "nothing left RUNNING"
    finished = {own_name(run) for run in filled if run.info.status == "FINISHED"}
    assert {RUN, "gen-00", "gen-01", lost_at, "g01/evaluate"} <= finished
    parent = next(run for run in filled if run.info.run_name == RUN)
    assert "evaluate/balanced_accuracy" in parent.data.metrics
    shown = relay("generations", RUN, env=env)
    assert shown.returncode == 0 and "incomplete" not in shown.stdout, shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines() if re.match(r"[01] ", line)]
    assert [row[0] for row in rows] == ["0", "1"] and all(row[1] != "-" for row in rows), shown.stdout
