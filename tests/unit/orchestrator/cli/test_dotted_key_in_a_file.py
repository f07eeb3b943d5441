"""A key with dots in a file (`train.steps: 3` at the top level) is the file's problem, and the fix is to nest it.

YAML reads it as one name, while the command line reads `train.steps=4` as `steps` inside `train`. The problem
said "train.steps: unknown key ... (set on the command line: train.steps=4)", blaming the valid override.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused


def test_a_dotted_key_of_the_file_is_not_blamed_on_an_override_and_is_shown_nested(cwd: Path, capsys) -> None:
    config = cwd / "dotted.yaml"
    config.write_text(SMOKE.read_text() + "\ntrain.steps: 3\n")
    err = refused(["validate", str(config), "train.steps=4"], cwd, capsys)
    assert "relay: 1 problem(s)" in err, err
    assert "  - 'train.steps': unknown key" in err, err
    assert "set on the command line" not in err, err
    assert "write it as\n      train:\n        steps: 3" in err, err
