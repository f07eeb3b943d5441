"""A class number the dataset lacks is a problem of the key that named it (data.classes, or LwF's lwf.old_classes):
it was headed by the whole section (`data: classes [77] are not classes of the dataset`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines

LWF = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "lwf_digits.yaml"


@pytest.mark.parametrize(
    ("override", "head"),
    [
        ("data.classes=[5,6,77]", "data.classes: classes [77] are not classes of the dataset (0..9)"),
        ("lwf.old_classes=[0,1,77]", "lwf.old_classes: classes [77] are not classes of the dataset (0..9)"),
    ],
)
def test_a_class_the_dataset_lacks_is_named_under_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, override: str, head: str
) -> None:
    assert main(["validate", str(LWF), f"run.workspace={tmp_path / 'ws'}", override]) == 2
    lines = [line for line in problem_lines(capsys.readouterr().err) if "are not classes of the dataset" in line]
    assert len(lines) == 1 and lines[0].startswith(head), lines
    assert lines[0].endswith(f"(set on the command line: {override})"), lines
