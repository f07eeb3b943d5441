"""`relay submit` of a file with a `tune:` section says, before it submits, that the job is one run of the base
config and how the sweep runs on the cluster (`relay tune FILE --address HOST:6379`).

Before, the job ran `relay run FILE` with exit 0 and no word that the `tune:` section was left out.
Against the small real HTTP server of ``test_cluster_submit_jobs_server`` that answers like Ray's Jobs server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator import jobs
from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import SMOKE, JobsServer, project, server

__all__ = ["project", "server"]  # the fixtures, used by name below

SWEEP_NOTE = "has a `tune:` section, which `relay submit` does not run: this job is one run of the base config"


def test_a_sweep_file_is_submitted_as_one_run_and_says_how_to_sweep(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["submit", str(SMOKE), "train.steps=5", "--run-id", "r1", "--address", server.address]
    assert main([*argv, "--skip-resource-check", "--workspace", "/mnt/relay-shared"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "r1"  # the job id alone on stdout, as for any submit
    assert f"relay: {SMOKE} {SWEEP_NOTE} (`relay run {SMOKE}`), not the sweep" in err
    assert f"`relay tune {SMOKE} train.steps=5 --address 127.0.0.1:6379` from this machine" in err
    (request,) = server.submitted
    assert "relay run" in request["entrypoint"] and "relay tune" not in request["entrypoint"]


def test_a_file_without_tune_says_nothing_of_sweeps(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {key: value for key, value in yaml.safe_load(SMOKE.read_text()).items() if key != "tune"}
    (project / "base.yaml").write_text(yaml.safe_dump(base))
    argv = ["submit", "base.yaml", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 0
    assert SWEEP_NOTE not in capsys.readouterr().err
    assert len(server.submitted) == 1


def test_a_refused_sweep_file_says_only_the_refusal(
    server: JobsServer, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.submit, "NODES_REPORT_WAIT_S", 0)
    server.usage = {"CPU": [0.0, 4.0], "memory": [0.0, 8e9]}
    argv = ["submit", str(SMOKE), "resources.train.num_cpus=6", "--address", server.address]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 2
    err = capsys.readouterr().err
    assert "asks for 6 CPU" in err and SWEEP_NOTE not in err
    assert server.submitted == []
