"""A later check's problem is withheld only for a key it names, never for a word of a path that looks like one.

Why: `relay validate ke_flower102.yaml train.steps=40` listed 1 problem, the warm-up: the cross-field check of
`train` left the whole section out, and the image folder's missing `data.root`, whose message shows the layout
`train/<class>/<image>`, was taken to name `train` and withheld; the user met it only after fixing the warm-up
(noisy_student_cifar10.yaml, whose CIFAR message names no such folder, listed both).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli.config_checks import _names
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import IDLE_TRAIN, problems_in

KE = SMOKE.parent / "ke_digits.yaml"
WARMUP_TOO_LONG = ["train.steps=40", "train.warmup_steps=160", "train.schedule=warmup_cosine"]


def test_a_missing_image_folder_is_listed_beside_a_warmup_as_long_as_training(cwd: Path, capsys) -> None:
    argv = ["validate", str(KE), *WARMUP_TOO_LONG, "data.name=imagefolder", f"data.root={cwd / 'flowers'}"]
    problems = problems_in(refused(argv, cwd, capsys))
    assert len(problems) == 2, problems
    assert problems[0].startswith("  - train.warmup_steps: expected fewer warm-up steps than train.steps (40)")
    assert problems[1].startswith("  - data.root: dataset 'imagefolder': expected a folder with train/<class>/")


def test_idle_workers_of_the_stages_named_train_are_listed_beside_the_warmup(cwd: Path, capsys) -> None:
    """`g00/train`, a stage's name, does not name the `train` section left out for the warm-up."""
    argv = ["validate", str(KE), *WARMUP_TOO_LONG, "resources.train.workers=2"]
    problems = problems_in(refused(argv, cwd, capsys))
    assert len(problems) == 2, problems
    assert any(IDLE_TRAIN in problem for problem in problems)


def test_a_key_is_named_as_a_key_and_not_as_a_path_segment() -> None:
    assert _names("train.steps: must be > 0", "train")
    assert _names("init.freeze_backbone_steps: expected fewer steps than train.steps (40)", "train.steps")
    assert _names("the default of train would answer", "train")
    assert not _names("data.root: expected a folder with train/<class>/<image>", "train")
    assert not _names("resources.train.workers: covers g00/train, g01/train", "train")
    assert not _names("resources.train.workers: 2 workers", "train")  # resources.train is another key
