"""Bad input prints its message and nothing before it: no log line of work that the refusal then undoes.

Before, every `relay tune` refused after its sweep was planned logged "code versions of 5 stage modules
under ..." first, and `relay submit` of a config outside the current folder warned "... is outside ...:
it must exist on the cluster" before a refusal of the cluster's (none answering, a stage too large).
"""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path

import pytest

from orchestrator import jobs
from orchestrator.cli import main
from orchestrator.cli.run.run_locations import RAY_JOB_ENV
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import (  # noqa: F401 (the fixtures)
    SMOKE,
    JobsServer,
    project,
    server,
)

CODE_VERSIONS = "code versions of"
OUTSIDE = "its text is sent with the job, which runs it as it is now"  # the file is outside the upload


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The log lines at INFO or above that hold ``text``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.INFO and text in record.getMessage()
    ]


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, and no store, cluster or Ray job of the shell's own."""
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", RAY_JOB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def dead_gcs() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["tune.metric=nosuch/x"], "tune.metric: no stage reports 'nosuch/x'"),
        (["--resume"], "tune: nothing to resume at"),
        (["--address", dead_gcs()], "--address: no Ray cluster answers at"),
    ],
)
def test_a_refused_sweep_logs_no_code_versions_first(shell: Path, capsys, caplog, extra, problem) -> None:
    caplog.set_level(logging.INFO)
    assert main(["tune", str(SMOKE), f"run.workspace={shell / 'ws'}", *extra]) == 2
    assert problem in capsys.readouterr().err
    assert said(caplog, CODE_VERSIONS) == [], "logged before the refusal"


def test_a_run_still_says_where_its_code_versions_come_from(shell: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    argv = ["run", str(SMOKE), "run.executor=local", f"run.workspace={shell / 'ws'}", "--stop-after", "data/split"]
    assert main(argv) == 0
    (line,) = said(caplog, CODE_VERSIONS)
    assert line.startswith("code versions of") and "stage modules under" in line


def test_submit_of_a_config_outside_the_folder_warns_only_once_the_job_is_sent(
    server: JobsServer,  # noqa: F811 (the fixture)
    project: Path,  # noqa: F811 (the fixture)
    capsys,
    caplog,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(jobs.capacity, "NODES_REPORT_WAIT_S", 0)
    outside = tmp_path / "elsewhere" / "smoke.yaml"
    outside.parent.mkdir()
    shutil.copy(SMOKE, outside)
    server.usage = {"CPU": [0.0, 4.0], "memory": [0.0, 8e9]}
    argv = ["submit", str(outside), "--address", server.address, "--workspace", "/mnt/relay-shared"]

    assert main([*argv, "resources.train.num_cpus=6"]) == 2  # no node holds the stage: refused
    assert "asks for 6 CPU" in capsys.readouterr().err
    assert main(["submit", str(outside), "--address", "http://" + dead_gcs(), "--workspace", "/mnt/relay-shared"]) == 2
    assert "no Ray Jobs server" in capsys.readouterr().err
    assert said(caplog, OUTSIDE) == [] and server.submitted == []

    assert main(argv) == 0
    assert said(caplog, OUTSIDE) == [f"{outside} is outside {project}, the folder the job uploads; {OUTSIDE}"]
    assert len(server.submitted) == 1
