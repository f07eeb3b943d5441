"""A run of a config `relay submit` sent with its job reads the store locations the user wrote from the job's copy.

Before: command.json named only the user's path on the submitting machine, and the MLflow config.yaml's
locations were read from that path on the cluster, where another file of that name (or none) may lie.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import COMMAND_FILE, record_path
from orchestrator.tracking import run_command


def test_the_locations_are_read_from_the_jobs_copy_not_the_submitting_machines_path(tmp_path: Path) -> None:
    theirs = tmp_path / "home" / "u" / "cfg" / "x.yaml"  # the same path on the cluster holds someone else's file
    theirs.parent.mkdir(parents=True)
    theirs.write_text("pipeline: crest\ntracking:\n  uri: http://not-this-one:5000\n")
    copy = tmp_path / "relay-config.abc123" / "x.yaml"
    copy.parent.mkdir()
    copy.write_text("pipeline: crest\ntracking:\n  uri: http://mlflow.team:5000\n")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    command = {"config": str(theirs), "config_sent_from": "laptop", "config_copy": str(copy), "overrides": []}
    store.write_record(record_path("r1", COMMAND_FILE), json.dumps(command).encode())

    read = run_command.read_command({"run": {"artifact_uri": store.uri}}, "r1")

    assert read is not None and read.config_path == str(theirs)  # what MLflow shows: the file the user submitted
    written = run_command.written_locations(read)
    assert written is not None and written[("tracking", "uri")] == "http://mlflow.team:5000"


def test_a_resume_whose_copy_is_gone_knows_no_locations_rather_than_reading_another_file(tmp_path: Path) -> None:
    theirs = tmp_path / "x.yaml"
    theirs.write_text("pipeline: crest\ntracking:\n  uri: http://not-this-one:5000\n")
    command = run_command.RunCommand(str(theirs), (), copy_path=str(tmp_path / "gone" / "x.yaml"))
    assert run_command.written_locations(command) is None
