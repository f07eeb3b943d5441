"""`data.class_order` of numbers that leaves classes out or gives one twice names them as written (docs/CONFIG.md).

Before the fix: `data.class_order=[1,1,2]` on smoke said only "expected each class number 0..9 once; got [1, 1, 2]", and
with `data.classes` set nothing said the numbers are places in that list. Real CLI, exit 2, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")


def refusal(tmp_path: Path, capsys: pytest.CaptureFixture, *overrides: str) -> str:
    assert main(["validate", SMOKE, f"run.workspace={tmp_path / 'ws'}", *overrides]) == 2
    assert not (tmp_path / "ws").exists()
    [line] = [line for line in capsys.readouterr().err.splitlines() if "data.class_order" in line]
    return line


def test_the_missing_and_doubled_class_numbers_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = refusal(tmp_path, capsys, "data.class_order=[1,1,2]")
    assert "data.class_order: expected each class number 0..9 once; got [1, 1, 2] " in line
    assert "(missing 0, 3, 4, 5, 6, 7, 8, 9; more than once: 1)" in line
    line = refusal(tmp_path, capsys, "data.class_order=[0,1,2,3,4,5,6,7,8,12]")
    assert "(missing 9; no such class: 12)" in line


def test_with_data_classes_the_numbers_are_said_to_be_places_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    line = refusal(tmp_path, capsys, "data.classes=[5,6,7,8,9]", "data.class_order=[1,1,2]")
    assert "expected each class number 0..4 once (a class's place in data.classes [5, 6, 7, 8, 9]" in line
    assert "(missing 0, 3, 4; more than once: 1)" in line


def test_an_order_of_every_class_once_is_valid(tmp_path: Path) -> None:
    assert main(["validate", SMOKE, f"run.workspace={tmp_path / 'ws'}", "data.class_order=[9,8,7,6,5,4,3,2,1,0]"]) == 0
