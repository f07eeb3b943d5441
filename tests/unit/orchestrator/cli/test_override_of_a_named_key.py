"""A problem names the override that caused it where the problem starts with its key rather than heading by it,
and where its own key is the file's but a key it names was set on the command line.

`lwf.old_classes=[5,6]`'s shared-classes problem and `train.steps=20`'s warm-up problem (under
train.warmup_steps, which the file sets) named no override.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in


def only_problem(argv: list[str], cwd: Path, capsys) -> str:
    problems = problems_in(refused(argv, cwd, capsys))
    assert len(problems) == 1, problems
    return problems[0]


def test_shared_classes_name_the_override_of_the_old_classes(cwd: Path, capsys) -> None:
    line = only_problem(["validate", str(SMOKE.parent / "lwf_digits.yaml"), "lwf.old_classes=[5,6]"], cwd, capsys)
    assert "share classes [5, 6]" in line and line.endswith("(set on the command line: lwf.old_classes=[5,6])"), line


def test_a_warmup_longer_than_train_steps_names_the_override_of_train_steps(cwd: Path, capsys) -> None:
    line = only_problem(["validate", str(SMOKE.parent / "noisy_student_digits.yaml"), "train.steps=20"], cwd, capsys)
    assert line.startswith("  - train.warmup_steps: expected fewer warm-up steps than train.steps (20)"), line
    assert line.endswith("(set on the command line: train.steps=20)"), line


def test_the_tune_space_entry_of_a_key_is_not_a_mention_of_it(cwd: Path, capsys) -> None:
    """`tune.space.train.steps` names the entry, not `train.steps`: an override of train.steps did not cause it."""
    argv = ["validate", str(SMOKE), "train.steps=30", "tune.space.train.steps={uniform: [5, 2]}"]
    line = only_problem(argv, cwd, capsys)
    assert line.endswith("(set on the command line: tune.space.train.steps={uniform: [5, 2]})"), line
