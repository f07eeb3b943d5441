"""A problem an override caused names where the override came from: `relay`'s command line, or the Python API's
``overrides`` argument. Before, ``relay.run(config, overrides=[...])`` said "(set on the command line: ...)",
and from Python there is no command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import api, main
from orchestrator.errors import InputError
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
LOCAL = "run.executor=local"


def test_the_cli_names_the_command_line(cwd: Path, capsys) -> None:
    assert main(["run", str(SMOKE), LOCAL, "train.steps=0"]) == 2
    (line,) = problem_lines(capsys.readouterr().err)
    assert line.startswith("train.steps: must be > 0") and line.endswith("(set on the command line: train.steps=0)")


def test_the_api_names_its_overrides(cwd: Path) -> None:
    with pytest.raises(InputError) as refused:
        api.run(SMOKE, [LOCAL, "train.steps=0"])
    (line,) = problem_lines(str(refused.value))
    assert line.startswith("train.steps: must be > 0") and line.endswith("(set by overrides: train.steps=0)")
    assert "command line" not in str(refused.value)


def test_the_api_names_its_overrides_in_a_problem_found_after_the_config(cwd: Path, capsys) -> None:
    """The local executor given a cluster address: found with the run's settings, worded alike."""
    with pytest.raises(InputError) as refused:
        api.run(SMOKE, [LOCAL, "run.ray_address=127.0.0.1:1"])
    (line,) = problem_lines(str(refused.value))
    assert line.startswith("run.ray_address: run.executor=local runs every stage in this process")
    assert line.endswith("(set by overrides: run.ray_address=127.0.0.1:1)"), line
    assert list(cwd.iterdir()) == [], "bad input wrote something"
