"""Learning without Forgetting (Li & Hoiem) as a Relay pipeline, beside fine-tuning and joint training.

`data/split` (the new task: `data.classes`) and `old/split` (the old task: `lwf.old_classes` of the
same dataset) -> `g00/train` + `g00/evaluate` (the old network, on the old task; or the model
`init.source` names, imported as it is) -> `g01/record` (the old network's logits on the new task's
images, before any training) -> `g01/train` (a new head added; new-task CE + lambda_o KL (softened, T) on the
old head against the recorded outputs) + `g01/evaluate` (old-task accuracy by the old head on the
old test split, new-task accuracy by the new head on the new one). `lwf.baselines` adds
`finetune/*` (the old head frozen, no old-task term: it forgets) and `joint/*` (both tasks' data:
the upper bound), logged as `finetune_*` and `joint_*` in generation 1. `init.freeze_backbone_steps`
is the paper's warm-up (only the new head trains at first).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.config import SafeName, StrictModel
from orchestrator.dag import Pipeline, Stage
from orchestrator.registry import PipelineSpec
from pipelines import split
from pipelines.builders.common import (
    ACCURACY_COLUMNS,
    LABELED_LOSS_KEYS,
    PRETEXT_PROBE_COLUMNS,
    SPLIT,
    InitLoad,
    gen,
    pipeline_of,
    preflight_supervised,
    split_stage,
    start_stages,
    starting,
    supervised_reads,
    unread_as_default,
)
from pipelines.builders.transfer import check_disjoint
from pipelines.schema import (
    ClassList,
    DataSection,
    LabelingRoles,
    PipelineFile,
    SupervisedDataSection,
    SupervisedTrainSection,
    check_warmup_fits,
    part,
)
from pipelines.stages import refs

OLD_SPLIT = "old/split"
OLD_MODEL = gen(0, "model")


class NewTaskDataSection(SupervisedDataSection):
    """`data` of LwF: the new task, by default digits 5-9, every training image labeled."""

    classes: ClassList | None = Field([5, 6, 7, 8, 9])


class LwfTrainSection(SupervisedTrainSection):
    """`train` of LwF: the old network's outputs are recorded on clean images, so by default it trains on clean ones."""

    augment: Literal["none", "weak", "strong"] = "none"


class LwfSection(StrictModel):
    """Learning without Forgetting (docs/ALGORITHMS.md, Learning without Forgetting).

    old_classes is the old task (classes of the same dataset, disjoint from data.classes);
    lambda_old and temperature weight and soften the old-task term (paper: 1 and 2); old_steps
    (default train.steps) trains the old network; baselines adds fine-tuning and joint training.
    """

    old_classes: ClassList = Field([0, 1, 2, 3, 4])
    lambda_old: float = Field(1.0, ge=0.0)
    temperature: float = Field(2.0, gt=0.0)
    old_steps: int | None = Field(None, gt=0)
    baselines: bool = True


class LwfLoss(StrictModel):
    """What the new-task train stages read of `lwf` (bounds checked there): the LwF branch's old-task term.

    The fine-tuning and joint branches have no such term and carry the defaults (new_task_reads), so
    a new `lwf.lambda_old` or `lwf.temperature` reruns `g01/train` alone.
    """

    lambda_old: float
    temperature: float


class LwfConfig(PipelineFile):
    """The whole LwF pipeline file; `pipeline: lwf` selects it."""

    pipeline: Literal["lwf"] = "lwf"
    name: SafeName = "lwf"
    data: NewTaskDataSection = NewTaskDataSection()
    train: LwfTrainSection = LwfTrainSection()
    lwf: LwfSection = LwfSection()
    resources: LabelingRoles = LabelingRoles()

    @model_validator(mode="after")
    def _disjoint_tasks(self) -> LwfConfig:
        check_disjoint(self.lwf.old_classes, self.data.classes, "lwf.old_classes")
        check_warmup_fits(self.lwf.old_steps, self.train, "lwf.old_steps")
        return self


def old_data(config: LwfConfig) -> DataSection:
    """The old task's data: the old classes of the same dataset, split as `data` is."""
    return config.data.model_copy(update={"classes": config.lwf.old_classes})


def _old_network(config: LwfConfig, pretrained: str | None) -> list[Stage]:
    """The old network on the old task (from `pretext` weights when set), or the imported model evaluated as it is."""
    res, old = config.resources, old_data(config)
    evaluation = gen(0, "evaluation")
    evaluate = refs.make_stage(
        gen(0, "evaluate"),
        refs.evaluate_network,
        {"split": OLD_SPLIT, "model": pretrained if config.init.source else OLD_MODEL, "evaluation": evaluation},
        (evaluation,),
        {"data": old, "batch_size": config.label.batch_size},
        res.evaluate,
        0,
    )
    if config.init.source is not None:
        return [evaluate]
    steps = config.lwf.old_steps or config.train.steps
    train = config.train.model_copy(update={"steps": steps})
    params = {"data": old, "model": config.model, **supervised_reads(train, config.augment)}
    io, params = starting({"split": OLD_SPLIT, "model": OLD_MODEL}, params, config, pretrained)
    return [refs.make_stage(gen(0, "train"), refs.train_network, io, (OLD_MODEL,), params, res.train, 0), evaluate]


def new_task_reads(config: LwfConfig, mode: str) -> dict:
    """A new-task train stage's `lwf` and `init` params: what branch ``mode`` reads, the rest at the defaults.

    Why: params are the cache key, and the fine-tuning and joint branches reran on `lwf.lambda_old` and
    `lwf.temperature` (the LwF term's), every branch on `init.head`: the new head is always added
    afresh here, and only the freezing schedule of `init` is read.
    """
    lwf = config.lwf if mode == "lwf" else unread_as_default(config.lwf, ("lambda_old", "temperature"))
    return {"lwf": part(LwfLoss, lwf), "init": part(InitLoad, unread_as_default(config.init, ("head",)))}


def _new_task(config: LwfConfig, role: str, mode: str, old_model: str, prefix: str = "") -> list[Stage]:
    """Train the two-headed network by ``mode`` (lwf, finetune, joint) and evaluate both tasks."""
    res = config.resources
    model, evaluation = f"{role}/model", f"{role}/evaluation"
    io = {"split": SPLIT, "old_split": OLD_SPLIT, "old_model": old_model, "model": model}
    if mode == "lwf":
        io["recorded"] = gen(1, "recorded")
    params = {
        "data": config.data,
        "old_data": old_data(config),
        **supervised_reads(config.train, config.augment, LABELED_LOSS_KEYS),
        **new_task_reads(config, mode),
        "mode": mode,
        "metric_prefix": prefix,
    }
    evaluate_io = {"split": SPLIT, "old_split": OLD_SPLIT, "model": model, "evaluation": evaluation}
    evaluate_params = {
        "data": config.data,
        "old_data": old_data(config),
        "batch_size": config.label.batch_size,
        "metric_prefix": prefix,
    }
    return [
        refs.make_stage(f"{role}/train", refs.learn_without_forgetting, io, (model,), params, res.train, 1),
        refs.make_stage(
            f"{role}/evaluate", refs.evaluate_tasks, evaluate_io, (evaluation,), evaluate_params, res.evaluate, 1
        ),
    ]


def build(config: LwfConfig) -> Pipeline:
    """splits -> old network -> recorded outputs -> LwF (and fine-tuning, joint training) as a static DAG."""
    res = config.resources
    splits = [split_stage(config), split_stage(config, OLD_SPLIT, old_data(config))]
    start, pretrained = start_stages(config)
    old_model = pretrained if config.init.source is not None else OLD_MODEL
    recorded = gen(1, "recorded")
    record = refs.make_stage(
        gen(1, "record"),
        refs.record_outputs,
        {"split": SPLIT, "old_model": old_model, "recorded": recorded},
        (recorded,),
        {"data": config.data, "batch_size": config.label.batch_size},
        res.pseudo_label,
        1,
    )
    stages = [*splits, *start, *_old_network(config, pretrained), record, *_new_task(config, "g01", "lwf", old_model)]
    if config.lwf.baselines:
        stages += _new_task(config, "finetune", "finetune", old_model, "finetune_")
        stages += _new_task(config, "joint", "joint", old_model, "joint_")
    return pipeline_of(config, stages)


def preflight(config: LwfConfig) -> list[str]:
    """The new task's data checks, and the old task's."""
    old = split.preflight_supervised_split(old_data(config).model_dump())
    # the old task's check is of data.classes set to lwf.old_classes: its problems are the latter's
    return preflight_supervised(config) + [f"lwf.old_classes: {p.removeprefix('data.classes: ')}" for p in old]


SUMMARY = {
    **ACCURACY_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "old task": "evaluate/old_accuracy",
    "new task": "evaluate/new_accuracy",
    "fine-tuning old": "evaluate/finetune_old_accuracy",
    "fine-tuning new": "evaluate/finetune_new_accuracy",
    "joint old": "evaluate/joint_old_accuracy",
    "joint new": "evaluate/joint_new_accuracy",
}
# g00 is the old network, trained on the old task, not a result: `relay runs` leaves it out of the best value
SPEC = PipelineSpec("lwf", LwfConfig, build, preflight, SUMMARY, reference_generations=frozenset({0}))
