"""The read commands (`relay generations`, `relay runs`, `relay resume`) answer bad input with one message and exit 2.

A tracking store MLflow cannot read (a file that is no database, an unknown scheme, a server that
does not answer), a damaged run record or a workspace that is a file: each is named with the fix,
no traceback, nothing written. Real files, a real sqlite database and real MLflow stores throughout.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.records import StageRecord
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.mlflow_tracker import MlflowTracker

TOY = PipelineSpec(name="toy", config_model=dict, build=lambda config: None, summary={"toy score": "evaluate/score"})
OTHER = PipelineSpec(name="other", config_model=dict, build=lambda config: None, summary={"other score": "train/x"})
NOT_UTF8 = b"pipeline: toy\nname: \xff\xfe\n"


@pytest.fixture(autouse=True)
def no_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's own stores must not decide where these commands read."""
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys: pytest.CaptureFixture, pipelines=None) -> str:
    """Run the command, check it exits 2 without a traceback, and return its message."""
    assert main(argv, pipelines=pipelines or {"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("relay: ")
    return err


def tracked_run(workspace: Path, run_id: str = "run-g") -> None:
    """One finished pipeline run, one generation, in the workspace's MLflow store."""
    tracker = MlflowTracker(f"sqlite:///{workspace / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline(run_id, "toy", {}, resume=False)
    record = StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics={"score": 0.75})
    tracker.stage_finished(record)
    tracker.end_pipeline("FINISHED")


def test_a_tracking_database_that_is_not_sqlite_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "mlflow.db").write_text("hello")
    message = refused(["generations", "--workspace", str(tmp_path)], capsys)
    assert f"{tmp_path / 'mlflow.db'} is not an SQLite database" in message and "--workspace" in message
    assert files_under(tmp_path) == {"mlflow.db": b"hello"}


def test_an_sqlite_file_without_mlflow_tables_is_refused_and_left_as_it_was(tmp_path: Path, capsys) -> None:
    """MLflow would create its tables in any database it is given: reading must not write."""
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    before = files_under(tmp_path)
    message = refused(["generations", "--workspace", str(tmp_path)], capsys)
    assert "holds no MLflow runs" in message and str(tmp_path / "mlflow.db") in message
    assert files_under(tmp_path) == before


def test_an_unknown_tracking_scheme_names_the_variable_and_the_forms(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://x")
    message = refused(["generations", "--workspace", str(tmp_path / "ws")], capsys)
    assert "$MLFLOW_TRACKING_URI" in message and "'nosuch'" in message
    assert "sqlite:///PATH/mlflow.db" in message and "http://HOST:5000" in message
    assert not (tmp_path / "ws").exists()


def test_a_tracking_server_that_does_not_answer_is_reported_at_once(tmp_path: Path, capsys, monkeypatch) -> None:
    """MLflow's client retries a dead server for minutes; the short probe answers in seconds."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    started = time.monotonic()
    message = refused(["generations", "--workspace", str(tmp_path)], capsys)
    assert time.monotonic() - started < 15
    assert "no MLflow tracking server answers at http://127.0.0.1:1" in message and "MLFLOW_TRACKING_URI" in message


@pytest.mark.parametrize("command", ["resume", "generations"])
def test_a_run_record_that_is_not_utf8_is_named(tmp_path: Path, capsys, command: str) -> None:
    record = tmp_path / "artifacts" / "runs" / "r1" / "config.yaml"
    record.parent.mkdir(parents=True)
    record.write_bytes(NOT_UTF8)
    message = refused([command, "r1", "--workspace", str(tmp_path)], capsys)
    assert record.as_uri() in message and "not UTF-8" in message
    assert files_under(tmp_path) == {"artifacts/runs/r1/config.yaml": NOT_UTF8}


def test_the_newest_record_that_cannot_be_read_does_not_choose_the_columns(tmp_path: Path, capsys) -> None:
    """`relay generations` without a run id takes its columns from the newest readable record."""
    tracked_run(tmp_path)
    runs = tmp_path / "artifacts" / "runs"
    for run_id, text in (("older", b"pipeline: toy\n"), ("newer", NOT_UTF8), ("newest", b"pipeline: [a, b]\n")):
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "config.yaml").write_bytes(text)
    for age, run_id in enumerate(("newest", "newer", "older")):
        os.utime(runs / run_id / "config.yaml", (time.time() - 100 * age, time.time() - 100 * age))
    assert main(["generations", "--workspace", str(tmp_path)], pipelines={"toy": TOY, "other": OTHER}) == 0
    assert "toy score" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["resume", "bogus", "--workspace", "{afile}"], "--workspace"),
        (["runs", "--workspace", "{afile}"], "--workspace"),
        (["runs", "--artifact-uri", "{afile}"], "--artifact-uri"),
        (["generations", "--workspace", "{afile}"], "--workspace"),
        (["generations", "--artifact-uri", "{afile}"], "--artifact-uri"),
    ],
)
def test_a_file_given_as_the_store_is_refused(tmp_path: Path, capsys, argv: list[str], flag: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    message = refused([arg.format(afile=afile) for arg in argv], capsys)
    assert f"{flag}: {afile} is a file" in message
    assert "relay run" not in message  # no advice to start a run in a file
    assert files_under(tmp_path) == {"afile": b"not a folder"}


def test_a_missing_run_names_the_store_and_the_suggested_listing_finds_its_runs(tmp_path: Path, capsys) -> None:
    record = tmp_path / "artifacts" / "runs" / "real-run" / "config.yaml"
    record.parent.mkdir(parents=True)
    record.write_text("pipeline: toy\n")
    message = refused(["resume", "bogus", "--workspace", str(tmp_path)], capsys)
    assert "in the command line" in message  # a run id is a command-line argument, not a configuration
    suggested = re.search(r"`relay runs --artifact-uri (\S+)`", message)
    assert suggested is not None and suggested.group(1) == str(tmp_path / "artifacts")
    assert main(["runs", "--artifact-uri", suggested.group(1)], pipelines={"toy": TOY}) == 0
    assert "real-run" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["runs"], ["generations", "r1"], ["resume", "r1"]])
def test_an_object_store_that_does_not_answer_is_refused_not_listed_as_empty(
    tmp_path: Path, capsys, monkeypatch, command: list[str]
) -> None:
    """An S3 endpoint where nothing listens: `relay runs` said "no runs ... yet" (exit 0), resume a raw AWS error."""
    from tests.integration.cluster import free_port

    dead = f"s3://bucket/relay?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    monkeypatch.setenv("RELAY_ARTIFACT_URI", dead)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "relay")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "relay-secret")
    monkeypatch.chdir(tmp_path)
    message = refused([*command, "--workspace", str(tmp_path / "ws")], capsys)
    assert f"$RELAY_ARTIFACT_URI: the store {dead} does not answer from this machine" in message
    assert files_under(tmp_path) == {}


def test_runs_in_a_workspace_that_does_not_exist_says_so(tmp_path: Path, capsys) -> None:
    """A mistyped --workspace read as an empty one: "no runs yet", with no hint that the folder is not there."""
    message = refused(["runs", "--workspace", str(tmp_path / "typo")], capsys)
    assert f"--workspace: the workspace {tmp_path / 'typo'} does not exist: check the path" in message
    assert files_under(tmp_path) == {}
