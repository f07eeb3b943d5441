"""`relay submit` leaves a Ray temp dir inside the project out of the upload, found by its content, and an
upload over Ray's limit names the folders that made it large.

A `ray start --temp-dir ./ray-logs` from the project folder had its session logs uploaded with
the code until the upload was over Ray's 100 MiB limit, and the refusal did not say which
folder to move. The Jobs server is the real-HTTP stand-in of the submit tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import jobs
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import JobsServer
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import server as server  # the fixture

SESSION = "session_2026-12-05_10-00-00_123456_4242"


def ray_temp_dir(folder: Path) -> Path:
    """The layout `ray start --temp-dir FOLDER` leaves: a session folder with logs, and session_latest to it."""
    logs = folder / SESSION / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_text("raylet log\n" * 100)
    (folder / "session_latest").symlink_to(folder / SESSION)
    return folder


def test_ray_temp_dirs_inside_the_project_are_left_out_whatever_their_names(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    ray_temp_dir(project / "ray-logs")
    ray_temp_dir(project / "scratch" / "ray")
    (project / "notes").mkdir()
    (project / "notes" / "session.txt").write_text("not Ray's\n")
    excludes = jobs.build_runtime_env(str(project), {}, None)["excludes"]
    assert {"/ray-logs", "/scratch/ray"} <= set(excludes)
    assert not any(exclude in ("/notes", "/src", "/scratch") for exclude in excludes)


def test_an_upload_over_rays_limit_names_its_largest_folders(
    server: JobsServer,
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "images.bin").write_bytes(b"0" * (3 * 2**20))
    (project / "src").mkdir()
    (project / "src" / "code.py").write_text("x = 1\n")
    (project / ".venv").mkdir()
    (project / ".venv" / "torch.so").write_bytes(b"0" * (5 * 2**20))  # excluded: not named
    server.upload_status = 413
    with pytest.raises(jobs.JobsError) as info:
        jobs.submit_entrypoint(server.address, "echo hi", str(project))
    message = str(info.value)
    assert f"the upload of {project} is over Ray's 100 MiB limit" in message
    assert "its largest folders: data/ (3 MiB), src/ (0 MiB)" in message
    assert ".venv" not in message


def test_a_folder_linked_into_the_project_is_counted_as_ray_packs_it(server: JobsServer, tmp_path: Path) -> None:
    """A virtualenv linked into the project (`ln -s ~/venv env`) was packed whole by Ray, while the message named
    only the project's small folders, since the sizes skipped links."""
    project, outside = tmp_path / "project", tmp_path / "venv"
    (project / "src").mkdir(parents=True)
    (project / "src" / "code.py").write_text("x = 1\n")
    outside.mkdir()
    (outside / "torch.so").write_bytes(b"0" * (4 * 2**20))
    (project / "env").symlink_to(outside)
    (outside / "back").symlink_to(project)  # a loop through the link is counted once, not for ever
    server.upload_status = 413
    with pytest.raises(jobs.JobsError) as info:
        jobs.submit_entrypoint(server.address, "echo hi", str(project))
    assert "its largest folders: env/ (4 MiB), src/ (0 MiB)" in str(info.value)
