"""`init.freeze_backbone_steps` and `init.backbone_lr_scale` set where no stage starts from pretrained weights are
refused: crest, noisy_student, distill, ke and fitnets train from random weights without `init.source` or a pretext
stage, and the run went on as if the keys were not there. Transfer, source selection and LwF always fine-tune
weights they pretrained (or the old network), so the keys act there."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import apply_overrides, load_yaml, validate_config
from pipelines.builders.common import unused_transfer_knob_problems
from pipelines.registry import PIPELINES

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
KNOBS = {"init.freeze_backbone_steps": 5, "init.backbone_lr_scale": 0.1}
FROM_RANDOM = ["crest_digits", "noisy_student_digits", "distill_digits", "ke_digits", "fitnets_digits"]
FROM_THEIR_OWN_PRETRAINING = ["transfer_digits", "domain_similarity_digits", "lwf_digits"]


def spec_and_config(name: str, **overrides: object) -> tuple:
    data = apply_overrides(load_yaml(str(CONFIGS / f"{name}.yaml")), overrides)
    spec = PIPELINES[data["pipeline"]]
    return spec, validate_config(spec.config_model, data)


def preflight(name: str, **overrides: object) -> list[str]:
    spec, config = spec_and_config(name, **overrides)
    return spec.preflight(config)


@pytest.mark.parametrize("name", FROM_RANDOM)
def test_knobs_without_pretrained_weights_are_refused_naming_the_fix(name: str) -> None:
    [problem] = preflight(name, **KNOBS)
    assert problem.startswith("init: init.freeze_backbone_steps and init.backbone_lr_scale act only on")
    assert "set init.source or pretext.method" in problem and "or remove init.freeze_backbone_steps and" in problem


@pytest.mark.parametrize("name", FROM_RANDOM)
def test_a_pretext_stage_gives_them_weights_to_act_on(name: str) -> None:
    assert preflight(name, **KNOBS, **{"pretext.method": "rotnet"}) == []


@pytest.mark.parametrize("name", FROM_THEIR_OWN_PRETRAINING)
def test_pipelines_that_fine_tune_their_own_pretraining_take_them(name: str) -> None:
    spec, config = spec_and_config(name, **KNOBS)
    assert unused_transfer_knob_problems(config, spec.build) == []
    assert spec.preflight(config) == []


@pytest.mark.parametrize("name", FROM_RANDOM + FROM_THEIR_OWN_PRETRAINING)
def test_the_defaults_are_never_refused(name: str) -> None:
    assert preflight(name) == []


def test_relay_run_refuses_one_key_by_name_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    args = ["run", str(CONFIGS / "ke_digits.yaml"), f"run.workspace={workspace}", "init.backbone_lr_scale=0.1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "init.backbone_lr_scale: acts only on a train stage that starts from pretrained weights" in err
    assert "(set on the command line: init.backbone_lr_scale=0.1)" in err
    assert not workspace.exists()
