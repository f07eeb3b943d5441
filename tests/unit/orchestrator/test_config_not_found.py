"""A config file that is not there: the message says where a relative path was looked for, and names the bundled
file a path like pipelines/configs/smoke.yaml means; it once told every user to run from the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.yaml_input import REPOSITORY, load_yaml


def problem(path: str | Path) -> str:
    with pytest.raises(ConfigError) as refused:
        load_yaml(path)
    [line] = refused.value.problems
    return line


def test_a_bundled_config_named_from_elsewhere_points_at_the_bundled_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = problem("pipelines/configs/smoke.yaml")
    assert f"in {tmp_path}" in line and f"the bundled one is {REPOSITORY / 'pipelines/configs/smoke.yaml'}" in line


def test_a_users_own_missing_file_is_not_sent_to_the_repository(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = problem("mine.yaml")
    assert line == f"file not found: mine.yaml (looked in {tmp_path}); check the path"
    assert "repository" not in problem(tmp_path / "mine.yaml")


def test_a_relative_path_read_from_a_deleted_folder_says_the_folder_is_gone(tmp_path, monkeypatch) -> None:
    """Path.cwd() raised a bare ENOENT naming no path while the message was built (a Ray job's driver whose working
    folder was unpacked again under it): the run's start failed with `[Errno 2] No such file or directory`."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    line = problem("mine.yaml")
    assert line.startswith("file not found: mine.yaml (looked in the current folder, which was deleted"), line
