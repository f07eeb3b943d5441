"""A problem `relay tune` finds in the search space names the command-line override that set its entry, as every
other override's problem does: the file heading the message holds no such line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines

CREST = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "crest_digits.yaml"
METRIC = "tune.metric=evaluate/balanced_accuracy"
OTHER_ENTRY = "tune.space.train.momentum={choice: [0.5, 0.9]}"


@pytest.mark.parametrize(
    ("override", "head"),
    [
        ("tune.space.train.lr={choice: [-1]}", "tune.space.train.lr: must be > 0.0"),
        ("tune.space.train.steps={uniform: [1, 5]}", "tune.space.train.steps: train.steps is an integer setting"),
        ("tune.space.train.nosuch={choice: [1]}", "tune.space.train.nosuch: unknown key; valid keys: batch_size"),
        ("tune.space.run.num_cpus={choice: [1, 2]}", "tune.space.run.num_cpus: run.num_cpus cannot vary per trial"),
        ("tune.space.crest.generations={choice: [1, 2]}", "tune.space.crest.generations: crest.generations=1 changes"),
    ],
)
def test_a_space_entry_set_on_the_command_line_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture, override: str, head: str
) -> None:
    workspace = tmp_path / "ws"
    assert main(["tune", str(CREST), f"run.workspace={workspace}", METRIC, OTHER_ENTRY, override]) == 2
    [line] = problem_lines(capsys.readouterr().err)
    assert line.startswith(head), line
    assert line.endswith(f"(set on the command line: {override})"), line
    assert not workspace.exists()


def test_a_whole_space_set_on_the_command_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = "tune.space={train.lr: {choice: [-1]}}"
    assert main(["tune", str(CREST), f"run.workspace={tmp_path / 'ws'}", METRIC, space]) == 2
    [line] = problem_lines(capsys.readouterr().err)
    assert line.startswith("tune.space.train.lr: must be > 0.0") and line.endswith(
        f"(set on the command line: {space})"
    )


@pytest.mark.parametrize("command", ["tune", "validate"])
def test_relay_validate_names_the_space_entry_as_relay_tune_does(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    override = "tune.space.train.lr={choice: [-1]}"
    assert main([command, str(CREST), f"run.workspace={tmp_path / 'ws'}", METRIC, override]) == 2
    [line] = problem_lines(capsys.readouterr().err)
    assert line.endswith(f"(set on the command line: {override})"), line
