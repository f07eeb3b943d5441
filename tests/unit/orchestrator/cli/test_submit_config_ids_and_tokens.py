"""Job submission's own logic, without a cluster: which config the job runs, its id, and what a refusal says.

Before: a config outside the uploaded folder (`../cfg/x.yaml`) or in a folder the upload leaves out
(`relay-workspace/tune/s/best.yaml`, what a sweep's best.yaml header names) was sent by a path the job
could not read, and the job failed on the cluster with "file not found"; a resume after `ray job delete`
of a middle job took the gap (-resume-2) while `relay status/stop RUN` acted on -resume-3; a resume's id
taken meanwhile said "pick another --run-id", a flag --resume refuses; a resume right after `relay
stop` was told to stop the job and named no --address; RAY_AUTH_MODE=disabled with a token set was
told to set RAY_AUTH_TOKEN.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator import jobs
from orchestrator.errors import ConfigError, InputError
from orchestrator.jobs import connection, submit

CONFIG_TEXT = "# a user's config: $HOME and `quotes` stay as written\npipeline: crest\nname: 'it''s'\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the upload) beside a folder of configs, as the current folder; no Ray temp dir variable."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (tmp_path / "cfg").mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.delenv("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", raising=False)
    return folder


def written(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG_TEXT)
    return str(path)


def run_as_ray_does(entrypoint: str, env_vars: dict[str, str], cwd: Path, tmp: Path) -> tuple[list[str], str]:
    """The entrypoint through `sh -c` (Ray's job supervisor: Popen(shell=True)) with a `relay` that keeps its
    arguments and a copy of the file its second one names; returns them."""
    kept = tmp / "kept"
    kept.mkdir()
    fake = kept / "relay"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$KEPT/args"\ncp "$2" "$KEPT/config"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{kept}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp), "KEPT": str(kept), **env_vars}
    done = subprocess.run(entrypoint, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return (kept / "args").read_text().splitlines(), (kept / "config").read_text()


# --------------------------------------------------------------------------- finding 1: the config the job runs


@pytest.mark.parametrize(
    "where",
    [
        "../cfg/smoke.yaml",  # outside the upload, relative
        "relay-workspace/tune/s/best.yaml",  # a folder Relay leaves out by name
        "shared/ws/tune/s/best.yaml",  # a workspace in the project that was passed as the job's (skip)
        "ignored/x.yaml",  # a folder the project's .gitignore names: Ray leaves it out too
    ],
)
def test_a_config_the_upload_does_not_hold_is_sent_with_the_job_and_runs(project: Path, where: str) -> None:
    (project / ".gitignore").write_text("ignored/\n")
    written(project / where)
    overrides = ["train.steps=4", "run.name=with space"]
    entrypoint, env_vars, _ = submit.config_job(
        where, overrides, str(project), run_id="smoke-1", skip=[str(project / "shared/ws")]
    )
    assert env_vars[submit.CONFIG_TEXT_ENV] == CONFIG_TEXT
    assert env_vars[submit.CONFIG_FROM_ENV].endswith(f":{os.path.normpath(project / where)}")  # the run records it
    job_dir = project.parent / "ray-pkg"  # the job runs in Ray's copy of the upload, without the file
    job_dir.mkdir()
    arguments, text = run_as_ray_does(entrypoint, env_vars, job_dir, project.parent)
    assert arguments[0] == "run" and arguments[2:] == [*overrides, "--run-id", "smoke-1"]
    assert Path(arguments[1]).name == Path(where).name, "the file keeps its name"
    assert Path(arguments[1]).parent.parent == project.parent, "written under the job's temp dir"
    assert text == CONFIG_TEXT, "byte for byte what the user's file holds"


def test_a_config_in_the_upload_is_named_relative_to_it_and_nothing_is_sent(project: Path) -> None:
    config = written(project / "configs" / "smoke.yaml")
    for given in (config, "configs/smoke.yaml", "./configs/../configs/smoke.yaml"):
        entrypoint, env_vars, _ = submit.config_job(given, ["a=1"], str(project), run_id="r1")
        assert shlex.split(entrypoint) == ["relay", "run", "configs/smoke.yaml", "a=1", "--run-id", "r1"]
        assert env_vars == {}


def test_a_sweep_command_is_sent_the_same_way(project: Path) -> None:
    written(project.parent / "cfg" / "sweep.yaml")
    entrypoint, env_vars, _ = submit.config_job(
        "../cfg/sweep.yaml", [], str(project), run_flags=["--output", "/mnt/s"], command="tune"
    )
    arguments, text = run_as_ray_does(entrypoint, env_vars, project, project.parent)
    assert arguments[0] == "tune" and arguments[2:] == ["--output", "/mnt/s"] and text == CONFIG_TEXT


def test_a_config_too_large_to_send_is_refused(project: Path) -> None:
    config = project.parent / "cfg" / "big.yaml"
    config.write_text("pipeline: crest\n" + "# padding\n" * 20_000)
    with pytest.raises(ConfigError) as info:
        submit.config_job(str(config), [], str(project))
    assert "too large to send with the job" in str(info.value) and f"copy it into {project}" in str(info.value)


# --------------------------------------------------------------------------- finding 6: a resume's job id


def rows(*ids_and_statuses: tuple[str, str]) -> list[dict[str, str]]:
    return [{"id": job_id, "status": status} for job_id, status in ids_and_statuses]


@pytest.mark.parametrize(
    ("jobs_now", "expected"),
    [
        ([], "r1"),
        ([("r1", "FAILED")], "r1-resume-2"),
        ([("r1", "FAILED"), ("r1-resume-3", "STOPPED")], "r1-resume-4"),  # -resume-2 deleted (`ray job delete`)
        ([("r1-resume-2", "STOPPED")], "r1-resume-3"),  # the run's first job deleted
        ([("r1", "FAILED"), ("r10", "RUNNING"), ("r1-resume-x", "RUNNING")], "r1-resume-2"),  # not the run's
    ],
)
def test_a_resume_takes_an_id_above_the_runs_newest_job(
    monkeypatch: pytest.MonkeyPatch, jobs_now: list[tuple[str, str]], expected: str
) -> None:
    monkeypatch.setattr(submit, "list_jobs", lambda address: rows(*jobs_now))
    picked = jobs.free_submission_id("http://h:8265", "r1")
    assert picked == expected
    assert jobs.latest_job_of(rows(*jobs_now, (picked, "PENDING")), "r1") == picked, "status/stop act on it"


# --------------------------------------------------------------------------- finding 5: a job still running


def test_a_running_job_may_be_stopping_and_every_command_carries_the_address() -> None:
    with pytest.raises(jobs.JobStillRunningError) as info:
        jobs.check_no_active_job(rows(("r1", "STOPPED"), ("r1-resume-2", "RUNNING")), "r1", address="http://h:8265")
    message = str(info.value)
    assert "the stop may still be in progress" in message
    assert "wait until `relay status r1-resume-2 --address http://h:8265` shows STOPPED" in message
    assert "`relay stop r1-resume-2 --address http://h:8265`" in message
    assert "`relay logs -f r1-resume-2 --address http://h:8265`" in message


def test_without_an_address_given_the_commands_name_none_and_a_pending_job_is_not_said_to_stop() -> None:
    with pytest.raises(jobs.JobStillRunningError) as info:
        jobs.check_no_active_job(rows(("sweep-s", "PENDING")), "sweep-s", kind="sweep")
    message = str(info.value)
    assert message.startswith("sweep sweep-s is still running as job sweep-s (PENDING)")
    assert "--address" not in message and "in progress" not in message
    assert "`relay stop sweep-s`" in message


def test_the_refusal_of_a_resume_names_the_address_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submit, "list_jobs", lambda address: rows(("r1", "RUNNING")))
    with pytest.raises(jobs.JobStillRunningError, match=r"relay stop r1 --address 127\.0\.0\.1:8291`"):
        jobs.free_submission_id("127.0.0.1:8291", "r1")


# --------------------------------------------------------------------------- finding 7: an id taken meanwhile


def taken(kind: str | None) -> str:
    with (
        pytest.raises(jobs.JobIdTakenError) as info,
        connection.translated_errors("http://h:8265", "r1-resume-2", kind=kind),
    ):
        raise RuntimeError("Request failed with status code 400: Job with submission_id r1-resume-2 already exists.")
    assert isinstance(info.value, InputError)
    return str(info.value)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("resume", "another resume of this run was just submitted"),
        ("sweep", "another job of this sweep was just submitted"),
        (None, "another job by that id was just submitted"),
    ],
)
def test_an_id_relay_picked_and_taken_meanwhile_names_no_run_id_flag(kind: str | None, said: str) -> None:
    message = taken(kind)
    assert said in message and "`relay status r1-resume-2 --address http://h:8265`" in message
    assert "--run-id" not in message


def test_a_run_id_the_user_chose_still_names_the_flag() -> None:
    assert "pick another --run-id" in taken("run")


def test_submit_entrypoint_passes_the_kind_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The submission itself hands the kind to the translation (Ray says "already exists" only on submit_job)."""

    class Client:
        def submit_job(self, **request: object) -> str:
            raise RuntimeError("Job with submission_id r1-resume-2 already exists.")

    monkeypatch.setattr(submit, "connect", lambda url: Client())
    with pytest.raises(jobs.JobIdTakenError, match="another resume of this run"):
        jobs.submit_entrypoint("http://h:8265", "true", str(tmp_path), submission_id="r1-resume-2", kind="resume")


# --------------------------------------------------------------------------- finding 8: RAY_AUTH_MODE=disabled


@pytest.fixture
def token_cluster() -> Iterator[str]:
    """A small HTTP server that answers as a token-mode Ray dashboard does before any token: its mode and version."""
    answers = {"/api/version": {"ray_version": "2.60.0"}, "/api/authentication_mode": {"authentication_mode": "token"}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def refusal(address: str) -> str:
    with pytest.raises(jobs.AuthTokenError) as info:
        jobs.connect(address)
    assert isinstance(info.value, InputError)
    return str(info.value)


@pytest.fixture
def no_auth_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.mark.parametrize("token_in", ["variable", "path", "home"])
def test_a_token_kept_back_by_the_disabled_mode_names_the_mode(
    token_cluster: str, no_auth_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token_in: str
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    if token_in == "variable":
        monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
        where = "$RAY_AUTH_TOKEN"
    else:
        file = tmp_path / "token" if token_in == "path" else no_auth_settings / ".ray" / "auth_token"
        file.parent.mkdir(exist_ok=True)
        file.write_text("secret\n")
        if token_in == "path":
            monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(file))
        where = str(file)
    message = refusal(token_cluster)
    assert f"RAY_AUTH_MODE=disabled keeps the one in {where} from being sent: unset RAY_AUTH_MODE" in message
    assert "none was found" not in message


def test_without_any_token_the_disabled_mode_still_asks_for_one(
    token_cluster: str, no_auth_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "none was found: set RAY_AUTH_TOKEN=<token>" in refusal(token_cluster)
