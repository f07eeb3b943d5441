"""A `tune.space` written nested like the config's sections is refused with the dotted keys to write instead.

`space: {augment: {strong: {num_ops: {randint: [1, 3]}}}}` was refused as
`tune.space.augment.strong: unknown key; valid keys: choice, grid, ...`, which named the domain
kinds but not that a space's keys are dotted config keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from tests.unit.orchestrator.tune.test_tune_config import problems, smoke_data

NESTED = {"augment": {"strong": {"num_ops": {"randint": [1, 3]}, "magnitude": {"choice": [5, 9]}}}}


def test_a_nested_space_entry_names_the_dotted_keys_to_write() -> None:
    [problem] = problems(smoke_data(space={**NESTED, "train.lr": {"uniform": [0.01, 0.1]}}))
    assert problem.startswith("tune.space: entry 'augment' is nested like a config section")
    assert "dotted config keys" in problem
    assert "`augment.strong.num_ops: {randint: [1, 3]}; augment.strong.magnitude: {choice: [5, 9]}`" in problem
    assert "valid keys: choice" not in problem


def test_an_entry_with_an_unknown_kind_beside_a_kind_still_names_the_kinds() -> None:
    [problem] = problems(smoke_data(space={"train.lr": {"uniform": [0.01, 0.1], "step": 2}}))
    assert "unknown key" in problem and "valid keys: choice" in problem


def test_the_cli_refuses_a_nested_space_with_exit_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "nested.yaml"
    config.write_text(yaml.safe_dump(smoke_data(space=NESTED)))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    assert main(["tune", str(config)]) == 2
    err = capsys.readouterr().err
    assert "tune.space: entry 'augment'" in err and "augment.strong.num_ops: {randint: [1, 3]}" in err
    assert not (tmp_path / "ws").exists()
