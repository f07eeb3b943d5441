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
