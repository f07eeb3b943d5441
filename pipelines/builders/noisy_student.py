"""Noisy Student (Xie et al., CVPR 2020) as a Relay pipeline: teacher, then iterated students.

`data/split` (the long-tailed labeled/unlabeled split of `data`) -> `g00/train` (the teacher, on
the labeled set, with noise: `train.augment` and `model.dropout`) -> `g00/pseudo_label` (the
un-noised teacher on clean unlabeled images: softmax(z / T) for soft labels, softmax(z) for hard
ones) -> `g00/filter` (confidence >= 0.3, top K per class, duplicated up to K) -> `g01/train` (the
student, from scratch, on labeled + pseudo-labeled data with noise: RandAugment, `student.dropout`
and `student.stochastic_depth`) -> `g01/pseudo_label` (the student is now the teacher) -> ... The
last generation only trains and evaluates.

Stochastic depth (the paper's third noise) applies to residual students (wrn28_2, resnet18,
resnet34): `student.stochastic_depth` is the drop probability of the last residual block,
decaying linearly toward the first (the paper's survival 0.8 is 0.2). small_cnn has no residual
blocks and must keep it at 0. Pseudo-labels and evaluation use eval mode, where it is off.
`init.source` or `pretext.method` starts the teacher from those weights (students start afresh,
as in the paper).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.config import SafeName, StrictModel
from orchestrator.dag import Parallelism, Pipeline, Stage
from orchestrator.registry import PipelineSpec
from pipelines.builders.common import (
    LONG_TAIL_COLUMNS,
    PRETEXT_PROBE_COLUMNS,
    SPLIT,
    gen,
    pipeline_of,
    preflight_semi_supervised,
    preflight_with_unused_knobs,
    split_stage,
    start_stages,
    starting,
    supervised_reads,
    unread_as_default,
)
from pipelines.data import CLASS_COUNTS, image_shape
from pipelines.model_names import PROBE_CHANNELS, PROBE_CLASSES, PROBE_PARAMETERS
from pipelines.schema import (
    DataSection,
    ModelSection,
    PipelineFile,
    StudentResourcesSection,
    SupervisedTrainSection,
    part,
)
from pipelines.stages import refs


class StudentSection(ModelSection):
    """The student network and its model noise: a `model` section with student defaults, plus require_larger.

    The noise is final-layer dropout and, on residual models, stochastic depth (the drop
    probability of the LAST residual block, as in ModelSection; the paper's survival 0.8 is 0.2).
    require_larger (an equal-or-larger student) is checked by parameter count against `model`
    (the teacher) when the config is validated; it is not a training input, so the train stages
    read the student as a plain ModelSection.
    """

    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    require_larger: bool = True


class NoisyStudentSection(StrictModel):
    """Noisy Student iterations (docs/ALGORITHMS.md, Noisy Student).

    iterations counts students (g01..); g00 is the teacher. label_type "soft" trains on softmax(z/T)
    with the soft cross-entropy on the student's plain logits, so T softens what the student learns;
    "hard" on argmax with label_smoothing (temperature then plays no part: label_temperature).
    min_confidence and per_class (K, default: unlabeled images / classes) are the filtering and
    balancing. unlabel_ratio weights the pseudo-labeled loss; pseudo_batch_ratio is how many
    pseudo-labeled images join each labeled one in a step.
    """

    iterations: int = Field(3, ge=1)
    label_type: Literal["soft", "hard"] = "soft"
    temperature: float = Field(1.0, gt=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    per_class: int | None = Field(None, ge=1)
    unlabel_ratio: float = Field(1.0, ge=0.0)
    pseudo_batch_ratio: int = Field(1, ge=1)


class PseudoLabelLoss(StrictModel):
    """What a student's train stage reads of `noisy` (bounds checked there): how pseudo-labels enter its loss.

    A stage's params are its cache key: with the whole section, `noisy.min_confidence` or
    `noisy.iterations` (read only by the filter and the builder) retrained the teacher and every
    student whose weights could not change. The teacher reads none of it. `noisy.temperature` is not
    here either: soft targets come tempered in the table (label_temperature), and the student fits them
    with its plain logits, so a new T reruns a student through the table it reads, and no hard-label one.
    `label_smoothing` smooths hard pseudo-labels only: soft-label students carry its default
    (pseudo_label_loss), so a new value reruns no student that ignores it.
    """

    label_type: Literal["soft", "hard"]
    label_smoothing: float
    unlabel_ratio: float
    pseudo_batch_ratio: int


def pseudo_label_loss(noisy: NoisyStudentSection) -> PseudoLabelLoss:
    """A student's `noisy` params: `noisy.label_smoothing` at its default for soft labels, which it does not smooth."""
    read = noisy if noisy.label_type == "hard" else unread_as_default(noisy, ("label_smoothing",))
    return part(PseudoLabelLoss, read)


def label_temperature(noisy: NoisyStudentSection) -> float:
    """The T of the softmax(z / T) that the pseudo-label table stores: `noisy.temperature` for soft labels, 1 for hard.

    Why: the table's confidence is what `noisy.min_confidence` filters, and in the paper T softens
    the soft targets only; hard pseudo-labels and their filter use the teacher's plain softmax.
    With T applied to hard labels, the same teacher kept 40 pseudo-labels at T 2.5 and 280 at T 1.
    Stages given 1 here do not rerun when T changes.
    """
    return noisy.temperature if noisy.label_type == "soft" else 1.0


class NoisyTrainSection(SupervisedTrainSection):
    """`train` of Noisy Student: the same knobs, RandAugment noise by default (the paper's input noise)."""

    augment: Literal["none", "weak", "strong"] = "strong"


# Weights of each model's first convolution per input channel (out_channels x 3 x 3, no bias), and of its
# classifier per class (features + bias): the parts of a registered model whose size follows the data.
# PROBE_PARAMETERS counts 3 channels and 10 classes.
STEM_WEIGHTS_PER_CHANNEL = {"small_cnn": 288, "wrn28_2": 144, "resnet18": 576, "resnet34": 576}
HEAD_WEIGHTS_PER_CLASS = {"small_cnn": 129, "wrn28_2": 129, "resnet18": 513, "resnet34": 513}


def model_size(name: str, channels: int = PROBE_CHANNELS, classes: int = PROBE_CLASSES) -> int:
    """Parameter count of a registered model on images of ``channels`` channels and ``classes`` classes, without torch.

    Why not PROBE_PARAMETERS alone: it counts RGB models of 10 classes, and the error then quoted
    11,173,962 for a resnet18 that, on 1-channel digits, the run logs as 11,172,810.
    """
    return (
        PROBE_PARAMETERS[name]
        + (channels - PROBE_CHANNELS) * STEM_WEIGHTS_PER_CHANNEL[name]
        + (classes - PROBE_CLASSES) * HEAD_WEIGHTS_PER_CLASS[name]
    )


def data_channels(dataset: str) -> int:
    """The image channels of dataset ``dataset`` (known without reading images), or PROBE_CHANNELS when unknown."""
    shape = image_shape(dataset)
    return PROBE_CHANNELS if shape is None else shape[0]


def data_classes(data: DataSection) -> int:
    """The classes the models are built for: `data.classes` when it picks some, else the dataset's own where
    known without reading it (an image folder's or imported dataset's: PROBE_CLASSES, an estimate)."""
    return len(data.classes) if data.classes else CLASS_COUNTS.get(data.name, PROBE_CLASSES)


def check_student_size(
    teacher: str, student: str, section: str = "student", channels: int = PROBE_CHANNELS, classes: int = PROBE_CLASSES
) -> None:
    """Noisy Student needs an equal-or-larger student; ValueError naming the keys otherwise."""
    teacher_size, student_size = model_size(teacher, channels, classes), model_size(student, channels, classes)
    if student_size < teacher_size:
        raise ValueError(
            f"{section}.name: expected a student at least as large as the teacher (model.name {teacher!r}, "
            f"{teacher_size:,} parameters), got {student!r} with {student_size:,}; pick a larger {section}.name "
            f"or set {section}.require_larger=false"
        )


class NoisyStudentConfig(PipelineFile):
    """The whole Noisy Student pipeline file; `pipeline: noisy_student` selects it."""

    pipeline: Literal["noisy_student"] = "noisy_student"
    name: SafeName = "noisy-student"
    student: StudentSection = StudentSection()
    train: NoisyTrainSection = NoisyTrainSection()
    noisy: NoisyStudentSection = NoisyStudentSection()
    resources: StudentResourcesSection = StudentResourcesSection()

    @model_validator(mode="after")
    def _student_not_smaller(self) -> NoisyStudentConfig:
        if self.student.require_larger:
            check_student_size(
                self.model.name,
                self.student.name,
                channels=data_channels(self.data.name),
                classes=data_classes(self.data),
            )
        return self


def _train(config: NoisyStudentConfig, k: int, pretrained: str | None) -> Stage:
    """g00 trains the teacher on labeled data (from ``pretrained`` when given); gK (K > 0) a student on labeled + the previous picks."""
    io = {"split": SPLIT, "model": gen(k, "model")}
    params = {"data": config.data, "model": config.model, **supervised_reads(config.train, config.augment)}
    if k == 0:
        io, params = starting(io, params, config, pretrained)
    else:
        io.update({"picks": gen(k - 1, "picks"), "pseudo_labels": gen(k - 1, "pseudo_labels")})
        params.update({"model": part(ModelSection, config.student), "noisy": pseudo_label_loss(config.noisy)})
    return refs.make_stage(
        gen(k, "train"), refs.train_network, io, (gen(k, "model"),), params, config.resources.train, k
    )


def generation_stages(config: NoisyStudentConfig, k: int, pretrained: str | None = None) -> list[Stage]:
    """Train and evaluate generation k; all but the last also label and filter for the next student."""
    data, res, noisy = config.data, config.resources, config.noisy
    model, evaluation, labels, picks = gen(k, "model"), gen(k, "evaluation"), gen(k, "pseudo_labels"), gen(k, "picks")
    result = [
        _train(config, k, pretrained),
        refs.make_stage(
            gen(k, "evaluate"),
            refs.evaluate_network,
            {"split": SPLIT, "model": model, "evaluation": evaluation},
            (evaluation,),
            {"data": data, "batch_size": config.label.batch_size},
            res.evaluate,
            k,
        ),
    ]
    if k == noisy.iterations:
        return result
    label_params = {
        "data": data,
        "batch_size": config.label.batch_size,
        "shard_size": config.label.shard_size,
        "generation": k,
        "temperature": label_temperature(noisy),
    }
    filter_params = {
        "data": data,
        "generation": k,
        "min_confidence": noisy.min_confidence,
        "min_confidence_key": "noisy.min_confidence",  # what the filter's warning names
        "per_class": noisy.per_class,
    }
    return result + [
        refs.make_stage(
            gen(k, "pseudo_label"),
            refs.pseudo_label_generation,
            {"split": SPLIT, "model": model, "pseudo_labels": labels},
            (labels,),
            label_params,
            res.pseudo_label,
            k,
            Parallelism.SHARDS,
        ),
        refs.make_stage(
            gen(k, "filter"),
            refs.filter_pseudo_labels,
            {"split": SPLIT, "pseudo_labels": labels, "picks": picks},
            (picks,),
            filter_params,
            res.filter,
            k,
        ),
    ]


def build(config: NoisyStudentConfig) -> Pipeline:
    """Unroll teacher + `noisy.iterations` students into a static DAG."""
    first = split_stage(config, body=refs.split_data)
    start, pretrained = start_stages(config)
    generations = [s for k in range(config.noisy.iterations + 1) for s in generation_stages(config, k, pretrained)]
    stages = [first, *start, *generations]
    return pipeline_of(config, stages)


SUMMARY = {
    **LONG_TAIL_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "params": "evaluate/dense_params",
    "kept": "filter/kept_total",
    "picks_accuracy": "filter/picks_accuracy",
}


SPEC = PipelineSpec(
    "noisy_student", NoisyStudentConfig, build, preflight_with_unused_knobs(preflight_semi_supervised, build), SUMMARY
)
