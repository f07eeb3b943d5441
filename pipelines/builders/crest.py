"""CReST and CReST+ (Wei et al., 2021) as a Relay pipeline: generations unrolled into stages.

Generation k: `gKK/train` (FixMatch from scratch on the original labeled set plus the
previous generation's picks) -> `gKK/evaluate` and `gKK/pseudo_label` (the EMA model
labels the whole unlabeled split) -> `gKK/rebalance` (class-rebalanced picks) -> the
next generation's train. The last generation only trains and evaluates.
`crest.generations=1 crest.alignment=false` is plain FixMatch; `crest.alignment=true` (the default)
is CReST+, whose alignment is on from generation 0 (temperature 1.0), so one generation with it is
FixMatch plus distribution alignment, not plain FixMatch. `init.source` or
`pretext.method` starts every generation's training from those weights instead of random ones.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
    unread_as_default,
)
from pipelines.schedules import temperature
from pipelines.schema import (
    MAX_GENERATIONS,
    PipelineFile,
    ResourcesSection,
    TrainSection,
)
from pipelines.stages import refs

TAIL_FRACTION = 0.3  # the rarest 30% of classes (by labeled count) make up `tail_recall`


class CrestSection(StrictModel):
    """CReST / CReST+ generations (docs/ALGORITHMS.md, CReST and CReST+).

    alpha is the official code's flag: the sampling rate of frequency rank l is
    (N_{L+1-l} / N_1) ** (1 / alpha). alignment turns CReST into CReST+ (progressive
    distribution alignment with temperature from 1.0 down to t_min).
    """

    generations: int = Field(3, ge=1, le=MAX_GENERATIONS)
    alpha: float = Field(3.0, gt=0.0)
    selection: Literal["top", "bernoulli"] = "top"
    alignment: bool = True
    t_min: float = Field(0.5, ge=0.0, le=1.0)
    schedule: Literal["linear", "cosine", "step"] = "linear"
    alignment_momentum: float = Field(0.999, ge=0.0, lt=1.0)
    # p_model, the running mean of the model's predictions that alignment divides by: "debiased_ema"
    # starts at zero and divides by 1 - m^k (right from a short generation's first step); "uniform_ema"
    # starts at uniform without correction (USB's; 0.999 ** 600 = 0.55 of the start remains after 600 steps).
    p_model_estimate: Literal["debiased_ema", "uniform_ema"] = "debiased_ema"


class GenerationAlignment(StrictModel):
    """What one generation's train stage reads of `crest`: whether CReST+ aligns, and at which temperature.

    The temperature is the generation's point on `crest.schedule` (1.0 down to `t_min` over
    `crest.generations`), computed here rather than in the stage, so a stage's params (and its
    fingerprint) hold only what changes its model: generation 0 (always 1.0) stays cached when
    t_min, the schedule or the number of generations change, and so does every generation of
    CReST without alignment, whose `alignment_momentum` and `p_model_estimate` (read only to align)
    are their defaults here. `alpha` and `selection` belong to the rebalance stage.
    """

    alignment: bool
    temperature: float
    alignment_momentum: float
    p_model_estimate: Literal["debiased_ema", "uniform_ema"]


def alignment_of(crest: CrestSection, generation: int) -> GenerationAlignment:
    """Generation ``generation``'s alignment settings (the temperature is 1.0 where nothing is aligned)."""
    aligned = crest.alignment
    read = crest if aligned else unread_as_default(crest, ("alignment_momentum", "p_model_estimate"))
    return GenerationAlignment(
        alignment=aligned,
        temperature=temperature(generation, crest.generations, crest.t_min, crest.schedule) if aligned else 1.0,
        alignment_momentum=read.alignment_momentum,
        p_model_estimate=read.p_model_estimate,
    )


class CrestConfig(PipelineFile):
    """The whole CReST pipeline file; `pipeline: crest` selects it."""

    pipeline: Literal["crest"] = "crest"
    name: SafeName = "crest"
    train: TrainSection = TrainSection()
    crest: CrestSection = CrestSection()
    resources: ResourcesSection = ResourcesSection()


def generation_stages(config: CrestConfig, k: int, pretrained: str | None = None) -> list[Stage]:
    """The stages of generation k; only the config sections a stage uses enter its params (and fingerprint).

    ``pretrained`` (the `init/import` or pretext stage's model) starts every generation's training.
    """
    data, res = config.data, config.resources
    model, evaluation = gen(k, "model"), gen(k, "evaluation")
    train_io = {"split": SPLIT, "model": model}
    if k > 0:
        train_io["picks"] = gen(k - 1, "picks")
    train_params = {
        "data": data,
        "model": config.model,
        "train": config.train,
        "augment": config.augment,
        "crest": alignment_of(config.crest, k),
        "generation": k,
    }
    train_io, train_params = starting(train_io, train_params, config, pretrained)
    result = [
        refs.make_stage(gen(k, "train"), refs.train_generation, train_io, (model,), train_params, res.train, k),
        refs.make_stage(
            gen(k, "evaluate"),
            refs.evaluate_generation,
            {"split": SPLIT, "model": model, "evaluation": evaluation},
            (evaluation,),
            {"data": data, "batch_size": config.label.batch_size, "tail_fraction": TAIL_FRACTION},
            res.evaluate,
            k,
        ),
    ]
    if k == config.crest.generations - 1:
        return result
    labels, picks = gen(k, "pseudo_labels"), gen(k, "picks")
    return result + [
        refs.make_stage(
            gen(k, "pseudo_label"),
            refs.pseudo_label_generation,
            {"split": SPLIT, "model": model, "pseudo_labels": labels},
            (labels,),
            {
                "data": data,
                "batch_size": config.label.batch_size,
                "shard_size": config.label.shard_size,
                "generation": k,
            },
            res.pseudo_label,
            k,
            Parallelism.SHARDS,
        ),
        refs.make_stage(
            gen(k, "rebalance"),
            refs.rebalance_generation,
            {"split": SPLIT, "pseudo_labels": labels, "picks": picks},
            (picks,),
            {"data": data, "alpha": config.crest.alpha, "selection": config.crest.selection, "generation": k},
            res.rebalance,
            k,
        ),
    ]


def build(config: CrestConfig) -> Pipeline:
    """Unroll the generations into a static DAG: the engine never sees a loop."""
    first = split_stage(config, body=refs.split_data)
    start, pretrained = start_stages(config)
    generations = [s for k in range(config.crest.generations) for s in generation_stages(config, k, pretrained)]
    stages = [first, *start, *generations]
    return pipeline_of(config, stages)


SUMMARY = {
    **LONG_TAIL_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "kept": "rebalance/kept_total",
    "kept per class": "rebalance/kept/*",
}


SPEC = PipelineSpec("crest", CrestConfig, build, preflight_with_unused_knobs(preflight_semi_supervised, build), SUMMARY)
