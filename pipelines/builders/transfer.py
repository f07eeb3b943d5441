"""Transfer learning as a Relay pipeline: pretrain on a source task, fine-tune on the target, beside training from scratch.

`data/split` (the target task: `data.classes`, few labels) and `source/split` (the source task:
`transfer.source_classes` of the same dataset, every image labeled, classes balanced) ->
`g00/train` + `g00/evaluate` (pretraining on the source) -> `g01/train` (the target, from g00's
weights: a new classifier unless `init.head=keep`, `init.freeze_backbone_steps`,
`init.backbone_lr_scale`) + `g01/evaluate`. `transfer.baseline` adds `baseline/train` +
`baseline/evaluate`: the same network on the same labels from random weights (`baseline_*` metrics
in generation 1). With `init.source` the pretrained model comes from outside the run (`init/import`)
and the source stages are left out; with `pretext.method` the source pretraining starts from the
self-supervised encoder. Source and target classes must be disjoint: both splits are drawn from one
dataset, so a shared class could put target test images into the source's training set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.config import SafeName, StrictModel
from orchestrator.dag import Pipeline
from orchestrator.registry import PipelineSpec
from pipelines import split
from pipelines.builders.common import (
    ACCURACY_COLUMNS,
    BASELINE_PREFIX,
    PRETEXT_PROBE_COLUMNS,
    SPLIT,
    gen,
    pipeline_of,
    preflight_supervised,
    split_stage,
    start_stages,
    supervised_reads,
    train_and_evaluate,
)
from pipelines.schema import ClassList, DataSection, PipelineFile, SupervisedDataSection, check_warmup_fits

SOURCE_SPLIT = "source/split"


class TargetDataSection(SupervisedDataSection):
    """`data` of transfer learning: the target task, by default the tail digits 5-9 with a tenth of them labeled."""

    labeled_fraction: float = Field(0.1, gt=0.0, le=1.0)
    classes: ClassList | None = Field([5, 6, 7, 8, 9])


class TransferSection(StrictModel):
    """The source task (docs/ALGORITHMS.md, Transfer learning): classes of the same dataset, every image labeled.

    pretrain_steps (default: train.steps) is the source training; baseline adds the target
    network trained from random weights.
    """

    source_classes: ClassList = Field([0, 1, 2, 3, 4])
    pretrain_steps: int | None = Field(None, gt=0)
    baseline: bool = True


class TransferConfig(PipelineFile):
    """The whole transfer-learning pipeline file; `pipeline: transfer` selects it."""

    pipeline: Literal["transfer"] = "transfer"
    name: SafeName = "transfer"
    data: TargetDataSection = TargetDataSection()
    transfer: TransferSection = TransferSection()

    @model_validator(mode="after")
    def _disjoint_tasks(self) -> TransferConfig:
        if self.init.source is None:
            check_disjoint(self.transfer.source_classes, self.data.classes, "transfer.source_classes")
            check_warmup_fits(self.transfer.pretrain_steps, self.train, "transfer.pretrain_steps")
        return self


def check_disjoint(other: list[int | str], target: list[int | str] | None, key: str) -> None:
    """ValueError unless ``other`` and the target's ``data.classes`` are disjoint (both tasks come from one dataset)."""
    if target is None:
        raise ValueError(f"{key} needs data.classes: the target task must name its classes, disjoint from {other}")
    shared = sorted(set(other) & set(target), key=str)  # numbers and names may mix
    if shared:
        raise ValueError(
            f"{key} {other} and data.classes {target} share classes {shared}; both splits come from one dataset, so a "
            "shared class could put target test images into the other task's training set: use disjoint classes"
        )


def source_data(config: TransferConfig) -> DataSection:
    """The source task's data: the source classes, all labeled, balanced, from the same dataset and fold."""
    update = {"classes": config.transfer.source_classes, "labeled_fraction": 1.0, "imbalance_ratio": 1.0}
    return config.data.model_copy(update=update)


def build(config: TransferConfig) -> Pipeline:
    """split(s) -> source pretraining (or the imported model) -> target fine-tuning, and the from-scratch baseline."""
    stages = [split_stage(config)]
    start, pretrained = start_stages(config)
    stages += start
    target = {"data": config.data, "model": config.model, **supervised_reads(config.train, config.augment)}
    if config.init.source is None:
        source = source_data(config)
        steps = config.transfer.pretrain_steps or config.train.steps
        stages.append(split_stage(config, SOURCE_SPLIT, source))
        pretrain = {
            **target,
            "data": source,
            **supervised_reads(config.train.model_copy(update={"steps": steps}), config.augment),
        }
        stages += train_and_evaluate(config, "g00", 0, source, SOURCE_SPLIT, pretrain, pretrained)
        pretrained = gen(0, "model")
    stages += train_and_evaluate(config, "g01", 1, config.data, SPLIT, target, pretrained)
    if config.transfer.baseline:
        scratch = {**target, "metric_prefix": BASELINE_PREFIX}
        stages += train_and_evaluate(config, "baseline", 1, config.data, SPLIT, scratch, None)
    return pipeline_of(config, stages)


def preflight(config: TransferConfig) -> list[str]:
    """The target's data checks, and the source task's (its classes must have the images a balanced split needs)."""
    problems = preflight_supervised(config)
    if config.init.source is None:
        source = split.preflight_supervised_split(source_data(config).model_dump())
        problems += [f"transfer.source_classes: {problem}" for problem in source]
    return problems


SUMMARY = {**ACCURACY_COLUMNS, **PRETEXT_PROBE_COLUMNS, "from scratch": "evaluate/baseline_balanced_accuracy"}
# g00 is the source-task pretraining, not a result: `relay runs` leaves it out of the best value
SPEC = PipelineSpec("transfer", TransferConfig, build, preflight, SUMMARY, reference_generations=frozenset({0}))
