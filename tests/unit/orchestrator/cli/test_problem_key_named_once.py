"""A problem names its key once: a check of a whole section whose message is headed by the key it found
wrong is that key's problem, not the section's with the key repeated (`data: data.class_order: ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines

CREST = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "crest_digits.yaml"


@pytest.mark.parametrize(
    ("override", "head"),
    [
        ("data.class_order=[1,2]", "data.class_order: expected each class number 0..9 once; got [1, 2]"),
        ("train.unlabeled_ratio=100000", "train.unlabeled_ratio: the unlabeled batch train.batch_size"),
        ("data.head_count=100000", "data: head_count 100000 does not fit"),
    ],
)
def test_a_section_check_names_the_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture, override: str, head: str
) -> None:
    args = ["validate", str(CREST), f"run.workspace={tmp_path / 'ws'}", override]
    assert main(args) == 2
    [line] = problem_lines(capsys.readouterr().err)
    assert line.startswith(head), line
    assert line.endswith(f"(set on the command line: {override})"), line
    assert not (tmp_path / "ws").exists()
