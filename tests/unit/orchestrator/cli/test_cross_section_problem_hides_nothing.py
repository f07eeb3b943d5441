"""A file failing a check across sections (a hint layer the teacher lacks, old classes shared with the target's)
still gets its later checks: idle workers, a bad class order, a workspace that is a file, listed in the same exit 2.

Such a check gave no valid config, so the later checks did not run and the user met their problems only after
fixing the first. They now run on the file with the blamed value left out, as for a field error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in

FITNETS = str(SMOKE.parent / "fitnets_digits.yaml")
LWF = str(SMOKE.parent / "lwf_digits.yaml")


def keys_of(problems: list[str]) -> list[str]:
    return sorted(problem.removeprefix("  - ").split(" ", 1)[0].rstrip(":") for problem in problems)


def test_idle_workers_are_listed_with_a_hint_layer_the_teacher_lacks(cwd: Path, capsys) -> None:
    problems = problems_in(
        refused(["validate", FITNETS, "resources.train.workers=2", "fitnets.hint_layer=foo"], cwd, capsys)
    )
    assert keys_of(problems) == ["fitnets.hint_layer", "resources.train.workers"], problems


def test_shared_classes_a_field_error_idle_workers_and_a_workspace_file_are_listed_together(cwd: Path, capsys) -> None:
    (cwd / "afile").write_text("x")
    argv = ["validate", LWF, "lwf.old_classes=[5,6]", "lwf.temperature=0", "resources.train.workers=2"]
    problems = problems_in(refused([*argv, "run.workspace=afile"], cwd, capsys))
    assert keys_of(problems) == ["lwf.old_classes", "lwf.temperature", "resources.train.workers", "run.workspace"]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_class_order_and_idle_workers_are_listed_with_shared_classes(cwd: Path, capsys, command: str) -> None:
    argv = [command, LWF, "lwf.old_classes=[5,6]", "resources.train.workers=2", "data.class_order=[1,1]"]
    problems = problems_in(refused([*argv, "run.executor=local"], cwd, capsys))
    assert keys_of(problems) == ["data.class_order", "lwf.old_classes", "resources.train.workers"], problems


def test_idle_workers_are_listed_when_the_blamed_values_default_fails_the_check_too(cwd: Path, capsys) -> None:
    """`data.classes=[0..4]` shares the file's old classes, and their default [0..4] as well: the target's are
    left out next, so the rest of the file is still checked."""
    argv = ["validate", LWF, "data.classes=[0,1,2,3,4]", "resources.train.workers=2"]
    problems = problems_in(refused(argv, cwd, capsys))
    assert keys_of(problems) == ["lwf.old_classes", "resources.train.workers"], problems
