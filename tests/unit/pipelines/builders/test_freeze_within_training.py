"""`init.freeze_backbone_steps` at or beyond the steps of a stage that applies it is refused: that stage trains its
classifier alone to the end, its pretrained backbone never trains and `init.backbone_lr_scale` changes nothing (5000
against transfer's train.steps 200 used to be valid). Each stage is held to its own step count: transfer's and source
selection's pretraining and LwF's old network have keys of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES
from tests.unit.orchestrator.cli.problems import problem_lines

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
PRETEXT = {"pretext.method": "rotnet"}  # gives every train stage pretrained weights to freeze


def build_problems(name: str, **overrides: object) -> list[str]:
    data = apply_overrides(load_yaml(str(CONFIGS / f"{name}.yaml")), overrides)
    spec = PIPELINES[data["pipeline"]]
    try:
        spec.build(validate_config(spec.config_model, data))
    except ConfigError as exc:
        return exc.problems
    return []


def test_relay_validate_refuses_a_freeze_as_long_as_training_naming_both_values_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    config = str(CONFIGS / "transfer_digits.yaml")
    assert main(["validate", config, f"run.workspace={workspace}", "init.freeze_backbone_steps=5000"]) == 2
    assert not workspace.exists()
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(
        "init.freeze_backbone_steps: expected fewer steps than train.steps (200, trained by g01/train), got 5000: "
        "the pretrained backbone would never train and init.backbone_lr_scale would change nothing; "
        "lower init.freeze_backbone_steps below 200 (or raise train.steps)"
    )


@pytest.mark.parametrize(
    ("name", "overrides", "than", "fix"),
    [
        (
            "transfer_digits",
            {"transfer.pretrain_steps": 100},
            "transfer.pretrain_steps (100, trained by g00/train)",
            100,
        ),
        (
            "domain_similarity_digits",
            {"domain.pretrain_steps": 100},
            "domain.pretrain_steps (100, trained by g00/train)",
            100,
        ),
        ("lwf_digits", {"lwf.old_steps": 100}, "lwf.old_steps (100, trained by g00/train)", 100),
        ("crest_digits", {"train.steps": 100}, "train.steps (100, trained by g00/train, g01/train, g02/train)", 100),
        ("noisy_student_digits", {"train.steps": 100}, "train.steps (100, trained by g00/train)", 100),
    ],
)
def test_each_stage_is_held_to_the_steps_it_trains(name: str, overrides: dict, than: str, fix: int) -> None:
    [problem] = build_problems(name, **PRETEXT, **overrides, **{"init.freeze_backbone_steps": 100})
    assert f"expected fewer steps than {than}, got 100" in problem
    assert f"lower init.freeze_backbone_steps below {fix}" in problem


def test_a_freeze_one_step_short_of_training_is_accepted() -> None:
    assert build_problems("transfer_digits", **{"init.freeze_backbone_steps": 199}) == []


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_bundled_config_builds_with_and_without_a_pretext_stage(path: Path) -> None:
    assert build_problems(path.stem) == []
    assert build_problems(path.stem, **PRETEXT) == []
