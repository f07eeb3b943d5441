"""`relay submit` no longer prints Ray's lines about packing and uploading the project (8-12 per submit).

`Ignoring upload to cluster for these files: [.../.gitignore]` (once per .gitignore), `Creating a file package`,
`Uploading package gcs://...`, and `Directory '.venv' is now ignored by default ... set
RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES=''`, advice that would upload the virtualenv. Against the small real HTTP
server of ``test_cluster_submit_jobs_server``; Ray's own packing code runs as it does for a real cluster.
"""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.cli import main
from orchestrator.jobs.upload import DEFAULT_EXCLUDE_ADVICE, UPLOAD_LOGGERS
from tests.unit.orchestrator.cli.test_cluster_submit_jobs_server import SMOKE, JobsServer, project, server

__all__ = ["project", "server"]  # the fixtures, used by name below


def test_a_submit_prints_none_of_rays_upload_lines(server: JobsServer, project: Path, capsys) -> None:
    (project / ".gitignore").write_text("*.db\n")
    (project / "src" / ".gitignore").write_text("*.tmp\n")
    argv = ["submit", str(SMOKE), "--run-id", "r1", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 0
    err = capsys.readouterr().err
    for line in ("Ignoring upload to cluster", "Creating a file package", "Uploading package", DEFAULT_EXCLUDE_ADVICE):
        assert line not in err, err
    assert len(server.uploads) == 1  # the project was still packed and sent


def test_rays_warnings_and_errors_of_the_upload_still_pass(server: JobsServer, project: Path) -> None:
    argv = ["submit", str(SMOKE), "--run-id", "r2", "--address", server.address, "--skip-resource-check"]
    assert main([*argv, "--workspace", "/mnt/relay-shared"]) == 0  # the filters are in place from here on
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    logger, handler = logging.getLogger(UPLOAD_LOGGERS[0]), Keep()
    logger.addHandler(handler)
    try:
        logger.warning("a package could not be read")
        logger.error("the upload failed")
        logger.info("Creating a file package for local module")
        logger.warning(f"Directory '.venv' {DEFAULT_EXCLUDE_ADVICE}")
    finally:
        logger.removeHandler(handler)
    assert kept == ["a package could not be read", "the upload failed"]
