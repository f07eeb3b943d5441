"""A problem of one setting is listed once, under that setting's key.

LwF splits its old task by `data.class_order` too, and its check said the class order's problem again as
`lwf.old_classes: data.class_order: ...`, under a key the user never set.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in

LWF = str(SMOKE.parent / "lwf_digits.yaml")


def test_a_class_order_problem_is_listed_once_under_data_class_order(cwd: Path, capsys) -> None:
    problems = problems_in(
        refused(["validate", LWF, "data.class_order=[1,1]", "resources.train.workers=2"], cwd, capsys)
    )
    about_order = [problem for problem in problems if "expected each class number" in problem]
    assert len(about_order) == 1 and about_order[0].startswith("  - data.class_order: "), problems
    assert len(problems) == 2, problems
