"""FitNets (Romero et al., ICLR 2015) as a Relay pipeline: a teacher, the student's hint stage, then KD.

`data/split` (supervised, as distillation's) -> `g00/train` + `g00/evaluate` (the teacher, `model`)
-> `g01/hint` (the student, `student`, trained up to `fitnets.guided_layer` with a regressor onto
the teacher's `fitnets.hint_layer`: L_hint = 1/2 ||h_t - r(g_s)||^2) -> `g01/train` (Hinton KD of
the whole student, starting from the hint stage's weights) + `g01/evaluate`. `fitnets.kd_baseline`
adds `kd/*` (the same KD from random weights: FitNets without hints, `kd_*` metrics) and
`fitnets.student_baseline` adds `baseline/*` (the student without a teacher, `baseline_*`), both in
generation 1. Layers are module names; pipelines.model_names.HINT_LAYERS lists the valid ones of
every model, and the defaults are each network's middle one (the paper guides the middle layer).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.config import CheckProblems, SafeName, StrictModel
from orchestrator.dag import Pipeline, Stage
from orchestrator.registry import PipelineSpec
from pipelines.builders.common import (
    ACCURACY_COLUMNS,
    BASELINE_PREFIX,
    LABELED_LOSS_KEYS,
    PRETEXT_PROBE_COLUMNS,
    SPLIT,
    InitLoad,
    gen,
    pipeline_of,
    preflight_supervised,
    preflight_with_unused_knobs,
    split_stage,
    start_stages,
    supervised_reads,
    train_and_evaluate,
    unread_as_default,
)
from pipelines.builders.distill import DistillLoss, DistillTrainSection
from pipelines.model_names import check_hint_layer, middle_layer
from pipelines.schema import ModelSection, PipelineFile, SupervisedDataSection, check_warmup_fits
from pipelines.stages import refs

TEACHER = gen(0, "model")
HINTED = gen(1, "hinted")


class FitNetsSection(StrictModel):
    """FitNets (docs/ALGORITHMS.md, FitNets): the hint and guided layers by module name, and the KD that follows.

    hint_layer is a layer of the teacher (`model`), guided_layer one of the student; null picks
    the network's middle layer. hint_steps trains stage 1; temperature and alpha are stage 2's
    Hinton KD (L = (1 - alpha) CE + alpha T^2 KL).
    """

    hint_layer: str | None = None
    guided_layer: str | None = None
    hint_steps: int = Field(100, gt=0)
    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    kd_baseline: bool = True
    student_baseline: bool = True


class HintChoice(StrictModel):
    """What the hint stage reads: the two layers (resolved to names) and its length."""

    hint_layer: str
    guided_layer: str
    hint_steps: int


class FitNetsConfig(PipelineFile):
    """The whole FitNets pipeline file; `pipeline: fitnets` selects it."""

    pipeline: Literal["fitnets"] = "fitnets"
    name: SafeName = "fitnets"
    data: SupervisedDataSection = SupervisedDataSection()
    train: DistillTrainSection = DistillTrainSection()  # Hinton's plain CE beside the KD term: no smoothing
    student: ModelSection = ModelSection()
    fitnets: FitNetsSection = FitNetsSection()

    @model_validator(mode="after")
    def _hint_stage_fits_its_warmup(self) -> FitNetsConfig:
        check_warmup_fits(self.fitnets.hint_steps, self.train, "fitnets.hint_steps")
        return self

    @model_validator(mode="after")
    def _layers_exist(self) -> FitNetsConfig:
        """The teacher (model.name) has the hint layer and the student (student.name) the guided layer; each
        missing one is its own problem (``CheckProblems``), under its own key and the override that set it."""
        problems = []
        for key, model, layer in (
            ("fitnets.hint_layer", self.model.name, self.fitnets.hint_layer),
            ("fitnets.guided_layer", self.student.name, self.fitnets.guided_layer),
        ):
            try:
                if layer is not None:
                    check_hint_layer(model, layer, key)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise CheckProblems(problems)
        return self


def layers(config: FitNetsConfig) -> HintChoice:
    """The hint stage's layers: the configured names, or each network's middle layer."""
    return HintChoice(
        hint_layer=config.fitnets.hint_layer or middle_layer(config.model.name),
        guided_layer=config.fitnets.guided_layer or middle_layer(config.student.name),
        hint_steps=config.fitnets.hint_steps,
    )


def hint_reads(config: FitNetsConfig) -> dict:
    """The hint stage's `train` and `augment` params: its optimisation at `fitnets.hint_steps` (what it trains), and
    no labeled loss (it regresses the teacher's hint), whose keys reran it before."""
    train = config.train.model_copy(update={"steps": config.fitnets.hint_steps})
    return supervised_reads(train, config.augment, LABELED_LOSS_KEYS)


def _student(config: FitNetsConfig, role: str, teacher: bool, hinted: bool, prefix: str) -> list[Stage]:
    """A student network: with KD from the teacher or not, from the hint stage's weights or random ones."""
    io: dict[str, str] = {}
    params = {
        "data": config.data,
        "model": config.student,
        **supervised_reads(config.train, config.augment),
        "metric_prefix": prefix,
    }
    if teacher:
        params["distill"] = kd_read(config.fitnets)
        if config.fitnets.alpha > 0:
            io["teacher"] = TEACHER
    if hinted:  # FitNets' stage 2 continues the hinted student as it is: its classifier, no freezing
        io["pretrained"] = HINTED
        params["init"] = InitLoad(head="keep", freeze_backbone_steps=0, backbone_lr_scale=1.0)
    return train_and_evaluate(config, role, 1, config.data, SPLIT, params, io_roles=io)


def kd_read(fitnets: FitNetsSection) -> DistillLoss:
    """The KD stage's loss as it reads `fitnets`: with alpha 0, the temperature at its default.

    Why: ``(1 - alpha) CE + alpha T^2 KL`` with alpha 0 is CE alone, whatever T, so a new
    `fitnets.temperature` retrained the student to the same weights, and the teacher's logits, weighed
    by 0, were computed every step: with alpha 0 the student is wired no teacher (distillation's rule).
    """
    read = unread_as_default(fitnets, ("temperature",)) if fitnets.alpha == 0 else fitnets
    return DistillLoss(temperature=read.temperature, alpha=read.alpha)


def build(config: FitNetsConfig) -> Pipeline:
    """split -> teacher -> hint stage -> KD student (and the KD-only and no-teacher students)."""
    start, pretrained = start_stages(config)
    teacher_params = {"data": config.data, "model": config.model, **supervised_reads(config.train, config.augment)}
    teacher = train_and_evaluate(config, "g00", 0, config.data, SPLIT, teacher_params, pretrained)
    hint = refs.make_stage(
        gen(1, "hint"),
        refs.train_hints,
        {"split": SPLIT, "teacher": TEACHER, "hinted": HINTED},
        (HINTED,),
        {
            "data": config.data,
            "model": config.student,
            **hint_reads(config),
            "fitnets": layers(config),
        },
        config.resources.train,
        1,
    )
    stages = [
        split_stage(config),
        *start,
        *teacher,
        hint,
        *_student(config, "g01", teacher=True, hinted=True, prefix=""),
    ]
    if config.fitnets.kd_baseline:
        stages += _student(config, "kd", teacher=True, hinted=False, prefix="kd_")
    if config.fitnets.student_baseline:
        stages += _student(config, "baseline", teacher=False, hinted=False, prefix=BASELINE_PREFIX)
    return pipeline_of(config, stages)


SUMMARY = {
    **ACCURACY_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "hint loss": "hint/loss",
    "KD only": "evaluate/kd_balanced_accuracy",
    "no teacher": "evaluate/baseline_balanced_accuracy",
}


# g00 is the teacher, not a result: `relay runs` leaves it out of the best value
SPEC = PipelineSpec(
    "fitnets",
    FitNetsConfig,
    build,
    preflight_with_unused_knobs(preflight_supervised, build),
    SUMMARY,
    reference_generations=frozenset({0}),
)
