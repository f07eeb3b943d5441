"""What `relay submit` says of a store folder this machine does not read: one not made yet (a new workspace's) is
not called invisible, which reads as a shared-storage problem.

Against the small real Jobs server of ``test_cluster_submit_jobs_server``; pytest's folders (under /tmp)
stand for a folder every node mounts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from orchestrator.cli import main, temporary
from tests.unit.orchestrator.cli import test_cluster_submit_jobs_server as jobs_server
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import SMOKE, JobsServer

server = jobs_server.server  # its fixtures: the Jobs server, and the project folder `relay submit` runs from
project = jobs_server.project


@pytest.fixture(autouse=True)
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(temporary, "temp_roots", list)


def submit(server: JobsServer, workspace: Path, *flags: str) -> int:
    argv = ["submit", "--address", server.address, "--workspace", str(workspace), "--skip-resource-check", *flags]
    return main(argv)


def test_the_first_submit_to_a_new_workspace_says_its_store_does_not_exist_yet(
    server: JobsServer, project: Path, tmp_path: Path, caplog
) -> None:
    workspace = tmp_path / "qa2b" / "ws2"
    workspace.mkdir(parents=True)
    caplog.set_level(logging.INFO, logger="relay")
    assert submit(server, workspace, str(SMOKE), "--run-id", "qa2b-run7") == 0
    said = f"{workspace}/artifacts does not exist here yet; --run-id qa2b-run7 is checked on the cluster"
    assert said in caplog.text and "not visible" not in caplog.text, caplog.text
    assert [request["submission_id"] for request in server.submitted] == ["qa2b-run7"]


def test_a_store_nothing_of_which_is_here_is_still_not_visible_from_here(
    server: JobsServer, project: Path, tmp_path: Path, caplog
) -> None:
    """A folder only the cluster mounts: its parent is not here either."""
    workspace = tmp_path / "cluster-only" / "ws"
    caplog.set_level(logging.INFO, logger="relay")
    assert submit(server, workspace, str(SMOKE), "--run-id", "r1") == 0
    assert f"{workspace}/artifacts is not visible from here; --run-id r1 is checked on the cluster" in caplog.text
    assert submit(server, workspace, "--resume", "r1") == 0
    assert f"{workspace}/artifacts is not visible from here; the run record is read on the cluster" in caplog.text


def test_a_resumes_store_missing_from_a_folder_seen_here_is_said_to_be_missing(
    server: JobsServer, project: Path, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    assert submit(server, tmp_path, "--resume", "r2") == 0
    said = f"{tmp_path}/artifacts does not exist here; the run record is read on the cluster"
    assert said in caplog.text and "not visible" not in caplog.text, caplog.text
