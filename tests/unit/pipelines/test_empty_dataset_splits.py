"""A dataset whose train split, or own test split, holds no labelled image of the task is refused before a run.

Before the fix: a Parquet dataset with an empty test split passed `relay validate`, and `relay run` trained a
generation before its evaluation failed on 0 images (exit 1); an empty train split was reported as
"holdout_per_class 0 leaves nothing to train on", a knob that does nothing for a dataset with its own
test split. Real shards (``shards.write_dataset``), the real CLI's preflight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from pipelines.datasets import shards
from pipelines.long_tail import long_tailed_split
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")
SHAPE = (1, 8, 8)


def _split(count: int, labels: list[int | None] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` images of classes 0, 1, 2 in turn (or ``labels``; None: no label), as one chunk; none: no chunk."""
    if not count:
        return []
    values = [c % 3 for c in range(count)] if labels is None else [-1 if v is None else v for v in labels]
    images = np.random.default_rng(count).integers(0, 256, (count, *SHAPE), dtype=np.uint8)
    return [(images, np.asarray(values, dtype=np.int64))]


def _dataset(tmp_path: Path, train: list, test: list) -> str:
    uri = str(tmp_path / "pq")
    shards.write_dataset(uri, ["a", "b", "c"], SHAPE, "raw", {"train": train, "test": test})
    return uri


def _validate(tmp_path: Path, capsys: pytest.CaptureFixture, uri: str, *overrides: str) -> str:
    args = ["data.name=parquet", f"data.uri={uri}", "data.head_count=40", f"run.workspace={tmp_path / 'ws'}"]
    assert main(["validate", SMOKE, *args, *overrides]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    return problem


def test_an_empty_test_split_is_refused_naming_the_dataset_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = _dataset(tmp_path, _split(150), _split(0))
    problem = _validate(tmp_path, capsys, uri)
    assert problem.startswith(
        f"data.uri: the test split of dataset {uri!r} is empty (0 images): nothing to evaluate on"
    )
    assert "relay data import SOURCE NEW_DEST" in problem
    assert "import a source with no test split: then holdout_per_class images per class of train are tested" in problem


def test_relay_run_on_an_empty_test_split_exits_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = _dataset(tmp_path, _split(150), _split(0))
    workspace = tmp_path / "ws"
    args = ["data.name=parquet", f"data.uri={uri}", "data.head_count=40", f"run.workspace={workspace}"]
    assert main(["run", SMOKE, *args]) == 2
    assert "the test split of dataset" in capsys.readouterr().err
    assert not workspace.exists() or not any(workspace.iterdir())


def test_an_empty_train_split_says_so_not_that_a_holdout_of_0_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = _dataset(tmp_path, _split(0), _split(30))
    problem = _validate(tmp_path, capsys, uri, "data.holdout_per_class=5")
    assert problem.startswith(f"data.uri: the train split of dataset {uri!r} is empty (0 images): nothing to train on")
    assert "holdout_per_class 0" not in problem


def test_a_train_split_without_labels_or_a_test_split_without_the_task_classes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = _dataset(tmp_path, _split(6, [None] * 6), _split(30))
    problem = _validate(tmp_path, capsys, uri)
    assert "the train split of dataset" in problem
    assert "holds 6 image(s), none with a label: nothing to train on" in problem

    other = _dataset(tmp_path / "other", _split(150), _split(6, [0] * 6))
    problem = _validate(tmp_path, capsys, other, "data.classes=[1,2]")
    assert "the test split of dataset" in problem
    assert "holds no image of the classes data.classes picks (6 of other classes)" in problem


def test_a_dataset_with_both_splits_passes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = _dataset(tmp_path, _split(150), _split(30))
    args = ["data.name=parquet", f"data.uri={uri}", "data.head_count=40", f"run.workspace={tmp_path / 'ws'}"]
    assert main(["validate", SMOKE, *args]) == 0, capsys.readouterr().err


def test_the_long_tail_split_of_no_labelled_image_blames_the_train_split_not_the_holdout() -> None:
    with pytest.raises(ValueError, match="the train split holds no labelled image of the task") as caught:
        long_tailed_split(np.full(5, -1), 3, 2, 2.0, 0.5, np.random.default_rng(0), holdout_per_class=0)
    assert "holdout_per_class" not in str(caught.value)
