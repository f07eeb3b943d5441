"""`relay validate` lists a check across sections (a hint layer the teacher lacks, old classes shared with the
target's) beside the file's field errors.

Those checks run only once every field is valid, so a file with a field error and a wrong hint layer showed
the field error alone, and the user met the other after fixing it. They are now judged on the file without its
invalid values, and reported where they hold whatever those values are.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in

FITNETS = str(SMOKE.parent / "fitnets_digits.yaml")
LWF = str(SMOKE.parent / "lwf_digits.yaml")


def test_a_hint_layer_the_teacher_lacks_is_listed_with_a_field_error(cwd: Path, capsys) -> None:
    problems = problems_in(refused(["validate", FITNETS, "fitnets.hint_layer=foo", "fitnets.alpha=1.5"], cwd, capsys))
    assert len(problems) == 2, problems
    assert any(p.startswith("  - fitnets.alpha: must be <= 1.0") for p in problems)
    assert any("fitnets.hint_layer: 'resnet18' has no hint layer 'foo'" in p for p in problems)


def test_old_classes_shared_with_the_target_are_listed_with_a_field_error(cwd: Path, capsys) -> None:
    argv = ["validate", LWF, "lwf.old_classes=[5,6]", "lwf.temperature=0"]
    problems = problems_in(refused(argv, cwd, capsys))
    assert len(problems) == 2, problems
    assert any(p.startswith("  - lwf.temperature: must be > 0") for p in problems)
    assert any("lwf.old_classes [5, 6] and data.classes [5, 6, 7, 8, 9] share classes [5, 6]" in p for p in problems)


def test_a_hint_layer_is_not_judged_against_a_default_teacher_standing_in_for_an_invalid_one(cwd: Path, capsys) -> None:
    """`model.name` invalid: the default network (small_cnn) has no `layer2`, but the user never named it."""
    problems = problems_in(refused(["validate", FITNETS, "model.name=bogus", "fitnets.alpha=1.5"], cwd, capsys))
    assert len(problems) == 2, problems
    assert not any("hint layer" in p for p in problems), problems


def test_shared_classes_are_not_judged_against_default_classes_standing_in_for_invalid_ones(cwd: Path, capsys) -> None:
    """`data.classes` invalid: its default would share classes with `lwf.old_classes` in its place."""
    argv = ["validate", LWF, "lwf.old_classes=[0,1]", "data.classes=[-1]"]
    problems = problems_in(refused(argv, cwd, capsys))
    assert problems and all("data.classes" in p.split(":", 1)[0] for p in problems), problems
