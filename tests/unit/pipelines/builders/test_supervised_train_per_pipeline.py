"""The supervised `train` section's defaults and limits where the KE-oriented ones do not fit a pipeline.

Why: distillation (and FitNets) inherited KE's label smoothing 0.1, so a `pipeline: distill` file without
`train.label_smoothing` smoothed the teacher's labels and the student's hard-label CE while the docs
gave the loss as plain CE + T^2 KL (and a teacher trained with smoothing distils worse). KE accepted
`train.ema_decay`, and its train stage then handed the weight average, not the trained weights, to
the next generation, against the docs and the KE paper.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from pipelines.builders import distill, fitnets
from pipelines.builders import knowledge_evolution as ke
from tests.unit.orchestrator.cli.problems import problem_lines
from tests.unit.pipelines.helpers import config, problems

KE_DIGITS = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "ke_digits.yaml")
DISTILL_TRAIN_STAGES = ("g00/train", "g01/train", "baseline/train")


def train_smoothing_by_stage(pipeline_config: distill.DistillConfig) -> dict[str, float]:
    stages = {stage.name: stage for stage in distill.build(pipeline_config).stages}
    return {name: stages[name].params["train"].label_smoothing for name in DISTILL_TRAIN_STAGES}


def test_distill_trains_teacher_student_and_baseline_without_label_smoothing_by_default() -> None:
    assert distill.DistillConfig.model_validate({"pipeline": "distill"}).train.label_smoothing == 0.0
    assert train_smoothing_by_stage(config(distill.DistillConfig)) == dict.fromkeys(DISTILL_TRAIN_STAGES, 0.0)


def test_distill_label_smoothing_set_in_the_file_is_honoured() -> None:
    smoothed = config(distill.DistillConfig, **{"train.label_smoothing": 0.1})
    assert train_smoothing_by_stage(smoothed) == dict.fromkeys(DISTILL_TRAIN_STAGES, 0.1)


def test_ke_keeps_the_papers_label_smoothing() -> None:
    assert config(ke.KnowledgeEvolutionConfig).train.label_smoothing == 0.1


@pytest.mark.parametrize("decay", [0.5, 0.99])
def test_ke_refuses_a_weight_average_naming_the_key_and_why(decay: float) -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"train.ema_decay": decay})
    assert "1 problem" in message
    assert "train.ema_decay" in message and "trained (last) weights" in message
    assert "remove train.ema_decay" in message


@pytest.mark.parametrize("decay", [None, 0.0])
def test_ke_accepts_no_average(decay: float | None) -> None:
    assert config(ke.KnowledgeEvolutionConfig, **{"train.ema_decay": decay}).train.ema_decay == decay


def test_distill_still_accepts_a_weight_average() -> None:
    assert config(distill.DistillConfig, **{"train.ema_decay": 0.99}).train.ema_decay == 0.99


def test_relay_validate_refuses_ke_with_ema_decay_exit_2_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELAY_WORKSPACE", raising=False)
    capsys.readouterr()
    assert main(["validate", KE_DIGITS, "train.ema_decay=0.99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relay: ") and "Traceback" not in err, err
    (line,) = problem_lines(err)
    assert line.startswith("train.ema_decay: expected null in KE, got 0.99"), line
    assert list(tmp_path.iterdir()) == [], "bad input wrote something"


FITNETS_TRAIN_STAGES = ("g00/train", "g01/train", "kd/train", "baseline/train")


def fitnets_smoothing_by_stage(pipeline_config: fitnets.FitNetsConfig) -> dict[str, float]:
    stages = {stage.name: stage for stage in fitnets.build(pipeline_config).stages}
    return {name: stages[name].params["train"].label_smoothing for name in FITNETS_TRAIN_STAGES}


def test_fitnets_trains_teacher_students_and_baselines_without_label_smoothing_by_default() -> None:
    """FitNets' distillation stage is the same Hinton KD as distill's (plain CE + T^2 KL), teacher included."""
    assert fitnets.FitNetsConfig.model_validate({"pipeline": "fitnets"}).train.label_smoothing == 0.0
    assert fitnets_smoothing_by_stage(config(fitnets.FitNetsConfig)) == dict.fromkeys(FITNETS_TRAIN_STAGES, 0.0)


def test_fitnets_label_smoothing_set_in_the_file_is_honoured() -> None:
    smoothed = config(fitnets.FitNetsConfig, **{"train.label_smoothing": 0.1})
    assert fitnets_smoothing_by_stage(smoothed) == dict.fromkeys(FITNETS_TRAIN_STAGES, 0.1)
