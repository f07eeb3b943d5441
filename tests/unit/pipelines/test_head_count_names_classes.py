"""The head_count error names an image folder's class and suggests only the knobs that apply.

Before the fix: an image folder with its own test/ split (so no holdout is drawn) got "class 3 has 2 samples;
needs 0 holdout + 5 train ... lower holdout_per_class", naming neither the folder nor a knob
that could help. Real PNG folders, the real CLI's preflight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")


def _folder(root: Path, splits: tuple[str, ...]) -> Path:
    for split in splits:
        for name, count in (("cat", 12), ("dög ü", 12), ("owl", 2)):
            (root / split / name).mkdir(parents=True)
            for i in range(count if split == "train" else 2):
                Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def _problem(tmp_path: Path, capsys: pytest.CaptureFixture, root: Path, *overrides: str) -> str:
    args = [f"run.workspace={tmp_path / 'ws'}", "data.name=imagefolder", f"data.root={root}", *overrides]
    assert main(["validate", SMOKE, "data.head_count=8", "data.imbalance_ratio=2", *args]) == 2
    return capsys.readouterr().err


def test_an_image_folder_with_its_own_test_split_gets_the_class_name_and_no_holdout_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = _problem(tmp_path, capsys, _folder(tmp_path / "images", ("train", "test")))
    assert "head_count 8 does not fit: class 'owl' has 2 samples; needs 4 to train on." in err, err
    assert "Set head_count to at most 5 (the largest that fits every class at imbalance_ratio 2)" in err
    assert "holdout" not in err


def test_a_held_out_test_set_keeps_the_holdout_advice_and_names_classes_of_a_task(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _folder(tmp_path / "images", ("train",))
    err = _problem(tmp_path, capsys, root, "data.holdout_per_class=1", "data.classes=[cat,owl]")
    assert "class 'owl' has 2 samples; needs 1 holdout + 4 train" in err, err
    assert "and holdout_per_class 1), lower holdout_per_class, or raise imbalance_ratio" in err
