"""A key YAML reads as a number, a yes/no value, a date or null (`1:`, `yes:`, `~:`) is named with the fix, exit 2.

Every key of a config is a name. `1: 2` in a file ended `relay run`, `validate`, `tune` and `submit` in a TypeError
traceback (exit 1) from the recheck of the file without its invalid values, and `~: 2` said
"None: Keys should be strings ... fix the value".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused


@pytest.mark.parametrize("command", ["run", "validate", "tune"])
def test_a_number_as_a_top_level_key_is_named(cwd: Path, capsys, command: str) -> None:
    config = cwd / "numbered.yaml"
    config.write_text(SMOKE.read_text() + "1: 2\n")
    err = refused([command, str(config), "run.executor=local"], cwd, capsys)
    assert "  - 1: YAML reads this key as the number 1, not a name" in err, err
    assert "put it in quotes ('1')" in err, err


def test_a_number_as_a_key_inside_a_section_is_named_beside_its_other_problems(cwd: Path, capsys) -> None:
    config = cwd / "numbered.yaml"
    config.write_text("pipeline: crest\ntrain:\n  1: 2\n  steps: -1\n")
    err = refused(["validate", str(config)], cwd, capsys)
    assert "relay: 2 problem(s)" in err, err
    assert "  - train.1: YAML reads this key as the number 1" in err, err
    assert "  - train.steps: must be > 0" in err, err


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("yes: 2", "  - true: YAML reads this key as the yes/no value true"),
        ("2024-01-01: 2", "  - 2024-01-01: YAML reads this key as a value of type date"),
        ("~: 2", "  - <top level>: a key is empty (null); give it its name"),
    ],
)
def test_a_yes_no_date_or_empty_key_is_named(cwd: Path, capsys, line: str, said: str) -> None:
    config = cwd / "odd_key.yaml"
    config.write_text(f"pipeline: crest\n{line}\n")
    err = refused(["validate", str(config)], cwd, capsys)
    assert said in err, err
    assert "Keys should be strings" not in err, err


def test_a_number_as_a_key_of_the_search_space_is_named(cwd: Path, capsys) -> None:
    config = cwd / "space.yaml"
    config.write_text(SMOKE.read_text() + "    5: {choice: [1, 2]}\n")
    err = refused(["tune", str(config)], cwd, capsys)
    assert "  - tune.space.5: YAML reads this key as the number 5" in err, err


def test_a_number_as_a_key_given_on_the_command_line_is_named_with_the_override(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "train={1: 2}"], cwd, capsys)
    assert "  - train.1: YAML reads this key as the number 1" in err, err
    assert "(set on the command line: train={1: 2})" in err, err
