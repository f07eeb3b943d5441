"""A run of a config `relay submit` sent with its job records the user's file, not the job's copy of it.

Before: `relay submit ../cfg/x.yaml` (outside the upload: its text goes with the job, which writes it to
``/tmp/relay-config.XXXXXX/x.yaml`` and runs that) recorded the copy as the run's config, and MLflow showed it
as the run's source and command: a temporary path on the cluster that meant nothing to the user. The job's
entrypoint runs here through `sh -c`, as Ray's supervisor runs it, with a `relay` that leaves the copy; the
record is written by ``save_run_record`` into a real store and read back as the MLflow tracker reads it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.jobs import submit
from orchestrator.tracking.run_command import read_command

TEXT = "pipeline: toy\nname: shipped\n"


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


def job_copy(entrypoint: str, env_vars: dict[str, str], tmp: Path) -> Path:
    """The file the job's entrypoint wrote and handed to `relay run` (a `relay` here that only names it)."""
    bin_folder = tmp / "bin"
    bin_folder.mkdir()
    fake = bin_folder / "relay"
    fake.write_text('#!/bin/sh\nprintf "%s" "$2" > "$KEPT"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    kept = tmp / "kept"
    env = {"PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp), "KEPT": str(kept), **env_vars}
    done = subprocess.run(entrypoint, shell=True, cwd=tmp, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return Path(kept.read_text())


def recorded(tmp: Path, config_path: str) -> dict:
    store = ArtifactStore(str(tmp / "artifacts"))
    config = ToyConfig(pipeline="toy", name="shipped", run=RunSettings(workspace=str(tmp)))
    save_run_record(store, "r1", config, config_path, ["train.steps=2"])
    tracked = read_command({"run": {"artifact_uri": store.uri}}, "r1")  # what MLflow's source and command show
    command = json.loads((tmp / "artifacts/runs/r1/command.json").read_text())
    assert tracked is not None and tracked.config_path == command["config"]
    return command


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder `relay submit` runs in (the upload), beside a folder of configs; no job variables around."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "x.yaml").write_text(TEXT)
    monkeypatch.chdir(folder)
    for name in (submit.CONFIG_TEXT_ENV, submit.CONFIG_FROM_ENV, "RAY_TMPDIR"):
        monkeypatch.delenv(name, raising=False)
    return folder


def test_a_config_sent_with_the_job_is_recorded_as_the_users_file(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entrypoint, env_vars, _ = submit.config_job("../cfg/x.yaml", ["train.steps=2"], str(project), run_id="r1")
    job = tmp_path / "job"
    job.mkdir()
    copy = job_copy(entrypoint, env_vars, job)
    assert copy.read_text() == TEXT and "relay-config." in str(copy)
    for name, value in env_vars.items():  # the job's `relay run` has the job's variables
        monkeypatch.setenv(name, value)

    command = recorded(job, str(copy))

    assert command["config"] == str(tmp_path / "cfg" / "x.yaml"), command
    assert command["config_sent_from"] == socket.gethostname()
    assert command["overrides"] == ["train.steps=2"]


def test_another_file_in_a_job_with_a_sent_config_is_recorded_as_given(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variables reach what the job's driver starts: only the copy they wrote is told apart as the user's."""
    monkeypatch.setenv(submit.CONFIG_TEXT_ENV, TEXT)
    monkeypatch.setenv(submit.CONFIG_FROM_ENV, f"laptop:{tmp_path / 'cfg' / 'x.yaml'}")
    other = tmp_path / "other" / "x.yaml"
    other.parent.mkdir()
    other.write_text(TEXT + "seed: 1\n")

    command = recorded(tmp_path / "other", str(other))

    assert command["config"] == str(other) and "config_sent_from" not in command


def test_a_run_not_sent_as_a_job_is_recorded_as_given(project: Path, tmp_path: Path) -> None:
    command = recorded(tmp_path, "../cfg/x.yaml")

    assert command["config"] == "../cfg/x.yaml" and "config_sent_from" not in command


def test_a_config_sent_from_a_shell_inside_a_job_is_not_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`relay submit` inside a job whose config was sent: the new job gets its own config's variables only."""
    monkeypatch.setenv(submit.CONFIG_TEXT_ENV, TEXT)
    monkeypatch.setenv(submit.CONFIG_FROM_ENV, "laptop:/home/u/cfg/x.yaml")
    monkeypatch.setenv("RELAY_WORKSPACE", "/shared/ws")

    passed = submit.relay_env_vars()

    assert passed["RELAY_WORKSPACE"] == "/shared/ws"
    assert submit.CONFIG_TEXT_ENV not in passed and submit.CONFIG_FROM_ENV not in passed


@pytest.mark.parametrize("name", ["x.yaml", "my config.yaml"])
def test_relay_jobs_shows_a_sent_configs_job_as_the_command_it_runs_on_the_users_file(
    project: Path, tmp_path: Path, name: str
) -> None:
    """`relay jobs` showed such a job's entrypoint as the shell line that writes the file into a temp folder."""
    (tmp_path / "cfg" / name).write_text(TEXT)
    entrypoint, env_vars, _ = submit.config_job(f"../cfg/{name}", ["train.steps=2"], str(project), run_id="r1")
    assert entrypoint.startswith("folder=$(mktemp")

    shown = submit.readable_entrypoint(entrypoint, env_vars)

    assert shlex.split(shown) == ["relay", "run", str(tmp_path / "cfg" / name), "train.steps=2", "--run-id", "r1"]
    assert submit.readable_entrypoint(entrypoint, {}).startswith(
        f"relay run {shlex.quote(name)} "
    )  # sent by an older Relay
    plain = submit.pipeline_entrypoint("pipelines/configs/smoke.yaml", [], str(project), "r2", None, "run")
    assert submit.readable_entrypoint(plain, {}) == plain
