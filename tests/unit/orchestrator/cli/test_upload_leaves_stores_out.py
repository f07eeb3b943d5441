"""`relay submit` leaves a local MLflow store out of the upload: the database, its side files, and mlartifacts/.

Only ``*.db`` was excluded, so a project folder holding a sqlite store uploaded its ``.lock``,
SQLite's journal, WAL and shared-memory files, and ``mlartifacts/`` beside it, where Relay keeps the
experiments' plots, configs and model checkpoints (large, and meaningless on the cluster). The Jobs
server is the real-HTTP stand-in of the submit tests, which keeps the zip Ray's client uploaded.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator import jobs
from orchestrator.tracking.common import ARTIFACTS_FOLDER
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import JobsServer, uploaded_names
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import server as server  # the fixture

STORE_FILES = ("mlflow.db", "mlflow.db.lock", "mlflow.db-journal", "mlflow.db-wal", "mlflow.db-shm")


def test_a_sqlite_store_its_side_files_and_mlartifacts_are_not_uploaded(server: JobsServer, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "code.py").write_text("x = 1\n")
    for folder in (project, project / "experiments" / "old"):  # a store at the root and one further down
        folder.mkdir(parents=True, exist_ok=True)
        for name in STORE_FILES:
            (folder / name).write_bytes(b"SQLite format 3\x00")
        model = folder / ARTIFACTS_FOLDER / "1" / "abc" / "artifacts" / "model.pt"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"0" * 1000)
    jobs.submit_entrypoint(server.address, "echo hi", str(project))
    files = {name for name in uploaded_names(server) if not name.endswith("/")}
    assert files == {"src/code.py"}, files


def test_relays_artifact_folder_is_the_one_excluded() -> None:
    """The jobs layer may not import the tracking layer, so the name is written twice: they must agree."""
    assert ARTIFACTS_FOLDER in jobs.WORKING_DIR_EXCLUDES
