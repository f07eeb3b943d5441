"""Knowledge distillation (Hinton et al., 2015) as a Relay pipeline: a teacher, then a student.

`data/split` (supervised, as KE's) -> `g00/train` + `g00/evaluate` (the teacher, `model`) ->
`g01/train` (the student, `student`, on the labeled set with
L = (1 - alpha) CE + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)), the teacher in eval mode
seeing the same augmented batch) + `g01/evaluate`. A teacher trained once is reused from the
artifact store by every later run with the same teacher settings (its fingerprint matches), so
sweeping `distill.*` retrains only the student. `distill.student_baseline` adds the student
trained without a teacher (`baseline_*` metrics in generation 1) for the comparison. `init.source`
or `pretext.method` starts the teacher from those weights. With `distill.alpha` 0 the KL term is weighed
by 0: the student reads neither the teacher nor `distill.temperature` (a new temperature keeps its cache).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrator.config import SafeName, StrictModel
from orchestrator.dag import Pipeline, Stage
from orchestrator.registry import PipelineSpec
from pipelines.builders.common import (
    ACCURACY_COLUMNS,
    BASELINE_PREFIX,
    PRETEXT_PROBE_COLUMNS,
    SPLIT,
    gen,
    pipeline_of,
    preflight_supervised,
    preflight_with_unused_knobs,
    split_stage,
    start_stages,
    starting,
    supervised_reads,
    unread_as_default,
)
from pipelines.schema import (
    ModelSection,
    PipelineFile,
    SupervisedDataSection,
    SupervisedTrainSection,
    part,
)
from pipelines.stages import refs

TEACHER = gen(0, "model")


class DistillSection(StrictModel):
    """Hinton distillation (docs/ALGORITHMS.md, Distillation): L = (1 - alpha) CE + alpha T^2 KL.

    student_baseline adds the same student trained without the teacher, for comparison.
    """

    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    student_baseline: bool = True


class DistillLoss(StrictModel):
    """What the student's train stage reads of `distill` (bounds checked there): the loss, not the branches."""

    temperature: float
    alpha: float


class DistillTrainSection(SupervisedTrainSection):
    """`train` of distillation (`distill`, and FitNets' too): the same knobs, with no label smoothing by default.

    Why: the student's hard-label term is Hinton's plain CE, and a teacher trained with label
    smoothing distils worse (Muller et al., 2019: smoothing erases the similarities between wrong
    classes that the teacher's soft targets carry). The 0.1 this section inherits is the KE paper's,
    and KE keeps it. Set `train.label_smoothing` to smooth anyway (teacher, students and baselines alike).
    """

    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class DistillConfig(PipelineFile):
    """The whole distillation pipeline file; `pipeline: distill` selects it."""

    pipeline: Literal["distill"] = "distill"
    name: SafeName = "distill"
    data: SupervisedDataSection = SupervisedDataSection()
    train: DistillTrainSection = DistillTrainSection()
    student: ModelSection = ModelSection()
    distill: DistillSection = DistillSection()


def _pair(
    config: DistillConfig, role: str, k: int, teacher: bool, prefix: str = "", pretrained: str | None = None
) -> list[Stage]:
    """Train + evaluate one network: the teacher (k 0, from ``pretrained`` when given), the student (k 1) or the
    no-teacher baseline."""
    model_name, evaluation = f"{role}/model", f"{role}/evaluation"
    io = {"split": SPLIT, "model": model_name}
    params = {
        "data": config.data,
        "model": config.model if k == 0 else config.student,
        **supervised_reads(config.train, config.augment),
        "metric_prefix": prefix,
    }
    if teacher:
        params["distill"] = part(DistillLoss, distill_read(config.distill))
        if config.distill.alpha > 0:
            io["teacher"] = TEACHER
    io, params = starting(io, params, config, pretrained)
    res = config.resources
    return [
        refs.make_stage(f"{role}/train", refs.train_network, io, (model_name,), params, res.train, k),
        refs.make_stage(
            f"{role}/evaluate",
            refs.evaluate_network,
            {"split": SPLIT, "model": model_name, "evaluation": evaluation},
            (evaluation,),
            {"data": config.data, "batch_size": config.label.batch_size, "metric_prefix": prefix},
            res.evaluate,
            k,
        ),
    ]


def distill_read(distill: DistillSection) -> DistillSection:
    """`distill` as the student's loss reads it: with alpha 0, the temperature at its default.

    Why: ``(1 - alpha) CE + alpha T^2 KL`` with alpha 0 is CE alone, whatever T, so a new
    `distill.temperature` retrained the student to the same weights. With alpha 0 the builder wires
    no teacher either: its logits, weighed by 0, were computed every step for nothing.
    """
    return unread_as_default(distill, ("temperature",)) if distill.alpha == 0 else distill


def build(config: DistillConfig) -> Pipeline:
    """split -> teacher -> student (and the optional no-teacher student) as a static DAG."""
    first = split_stage(config)
    start, pretrained = start_stages(config)
    teacher = _pair(config, "g00", 0, teacher=False, pretrained=pretrained)
    result = [first, *start, *teacher, *_pair(config, "g01", 1, teacher=True)]
    if config.distill.student_baseline:
        result += _pair(config, "baseline", 1, teacher=False, prefix=BASELINE_PREFIX)
    return pipeline_of(config, result)


SUMMARY = {
    **ACCURACY_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "params": "evaluate/dense_params",
    "no-teacher baseline": "evaluate/baseline_balanced_accuracy",
}


# g00 is the teacher, not a result: `relay runs` leaves it out of the best value
SPEC = PipelineSpec(
    "distill",
    DistillConfig,
    build,
    preflight_with_unused_knobs(preflight_supervised, build),
    SUMMARY,
    reference_generations=frozenset({0}),
)
