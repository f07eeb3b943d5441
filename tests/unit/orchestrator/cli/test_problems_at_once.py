"""`relay validate` and `relay run` list a file's field errors and its later checks' problems in one go.

The checks after the field checks (the data's class order, where the run writes, the pipeline's
build: a role's workers that would idle, a probe of no stage) ran only once every field was valid,
so a file with one field error and one build error showed the field error alone, and the user met
the other after fixing it. They now run on the sections that validated: one exit 2, every problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

KE = SMOKE.parent / "ke_digits.yaml"
IDLE_TRAIN = "resources.train.workers: 2 workers, but resources.train covers g00/train"
BAD_ORDER = "data.class_order=[0,0,1,2,3,4,5,6,7,8]"


def problems_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("  - ")]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_field_error_and_a_build_error_are_listed_together(cwd: Path, capsys, command: str) -> None:
    err = refused([command, str(KE), "train.steps=-1", "resources.train.workers=2", "run.executor=local"], cwd, capsys)
    assert "2 problem(s)" in err
    assert "train.steps: must be > 0" in err and IDLE_TRAIN in err


def test_a_field_error_a_class_order_and_a_workspace_that_is_a_file_are_listed_together(cwd: Path, capsys) -> None:
    (cwd / "afile").write_text("x")
    argv = ["validate", str(KE), "train.steps=-1", BAD_ORDER, "run.workspace=afile", "resources.train.workers=2"]
    problems = problems_in(refused(argv, cwd, capsys))
    assert len(problems) == 4, problems
    assert any("data.class_order: expected each class number 0..9 once" in p for p in problems)
    assert any(p.startswith("  - run.workspace:") and "is a file" in p for p in problems)


def test_a_bad_probe_and_idle_workers_are_listed_together(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "probe=[g09/train]", "resources.evaluate.workers=2"], cwd, capsys)
    assert "probe[0]: 'g09/train' is no stage of this pipeline" in err
    assert "resources.evaluate.workers: 2 workers" in err


def test_a_later_check_on_a_section_with_a_field_error_is_not_reported(cwd: Path, capsys) -> None:
    """Its invalid value's default would answer in its place: the class order is not checked against it."""
    err = refused(["validate", str(KE), "data.labeled_fraction=7", BAD_ORDER], cwd, capsys)
    assert problems_in(err) == [line for line in problems_in(err) if "data.labeled_fraction" in line], err


def test_a_probe_is_not_checked_against_stages_an_invalid_generation_count_stands_for(cwd: Path, capsys) -> None:
    """`crest.generations` invalid: its default decides which stages exist, so `probe` is not judged by them."""
    err = refused(["validate", str(SMOKE), "crest.generations=0", "probe=[g04/train]"], cwd, capsys)
    assert "crest.generations" in err and "probe[0]" not in err


def test_weights_are_not_looked_for_in_a_default_workspace_standing_in_for_an_invalid_one(cwd: Path, capsys) -> None:
    """`run.workspace` invalid: `init.source=run:...` would be looked for in ./relay-workspace, which the user never named."""
    err = refused(["validate", str(KE), "run.workspace={a: 1}", "init.source=run:abc/g00/train"], cwd, capsys)
    assert [line.split(":")[0] for line in problems_in(err)] == ["  - run.workspace"], err


def test_class_names_are_not_looked_up_in_a_default_dataset_standing_in_for_an_invalid_one(cwd: Path, capsys) -> None:
    """`data.name` invalid: `transfer.source_classes` names are not judged against the default dataset's classes."""
    transfer = SMOKE.parent / "transfer_digits.yaml"
    err = refused(["validate", str(transfer), "data.name=bogus", "transfer.source_classes=[cat, dog]"], cwd, capsys)
    assert [line.split(":")[0] for line in problems_in(err)] == ["  - data.name"], err
