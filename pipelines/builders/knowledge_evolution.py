"""Knowledge Evolution (Taha et al., CVPR 2021) as a Relay pipeline: generations unrolled into stages.

`data/split` (a supervised split: with data.labeled_fraction 1 and data.imbalance_ratio 1 every
training image is labeled and classes are balanced) -> `g00/split_masks` (the fit/reset split,
drawn ONCE and persisted) -> `g00/train` (from scratch) -> `g01/train` (the LAST g00 checkpoint,
reset hypothesis re-initialised, new optimizer and LR schedule) -> ... Every `gKK/evaluate`
scores the dense network and, for KELS, the slim fit-hypothesis network. With one generation
nothing reads the masks (no reset, no slim network scored), so there is no `g00/split_masks`.
`ke.compute_matched_baseline` adds `baseline/train` + `baseline/evaluate`: one network trained
generations * train.steps steps, logged (as `baseline_*`) in the last generation's run, beside
the KE result of the same compute. `ke.generations=2 ke.reinit=zero` is a dense-reset-dense
variant akin to Dense-Sparse-Dense, without DSD's magnitude pruning or sparse training phase
(docs/ALGORITHMS.md, Knowledge Evolution). `init.source` or `pretext.method` starts
generation 0 (and the baseline) from those weights.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, field_validator

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
from pipelines.model_names import SPLIT_MODES
from pipelines.schema import (
    MAX_GENERATIONS,
    PipelineFile,
    SupervisedDataSection,
    SupervisedTrainSection,
    part,
)
from pipelines.stages import refs

MASKS = gen(0, "masks")


class KnowledgeEvolutionSection(StrictModel):
    """Knowledge Evolution generations (docs/ALGORITHMS.md, Knowledge Evolution).

    split_rate is sr: for KELS the share of each layer's filters and of its input channels in the
    fit hypothesis (about sr^2 of a conv's weights), for WELS each weight's chance of being in it.
    split_mode "kels" (channel prefix, slim network extractable) or "wels" (random weights).
    reinit "kaiming" draws the reset hypothesis afresh (KE); "zero" zeroes it, which with
    generations 2 is a dense-reset-dense variant akin to Dense-Sparse-Dense (no magnitude pruning,
    no sparse phase). compute_matched_baseline adds one network trained generations * train.steps
    steps: the honest comparison.
    """

    generations: int = Field(5, ge=1, le=MAX_GENERATIONS)
    split_rate: float = 0.5
    split_mode: str = "kels"
    reinit: Literal["kaiming", "zero"] = "kaiming"
    compute_matched_baseline: bool = False

    @field_validator("split_rate")
    @classmethod
    def _rate_in_open_interval(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"expected a fraction strictly between 0 and 1, got {value}; set ke.split_rate to e.g. 0.5 "
                "(paper default), 0.8 (KELS tables) or 0.7 (WELS tables)"
            )
        return value

    @field_validator("split_mode")
    @classmethod
    def _mode_is_known(cls, value: str) -> str:
        if value not in SPLIT_MODES:
            raise ValueError(
                f"expected one of {', '.join(SPLIT_MODES)}, got {value!r}; set ke.split_mode to 'kels' "
                "(channel split, slim network) or 'wels' (random weight split)"
            )
        return value


class MaskSplit(StrictModel):
    """What the split_masks stage reads of `ke` (bounds checked there): how the fit hypothesis is drawn."""

    split_rate: float
    split_mode: str


class ResetInit(StrictModel):
    """What a train stage after generation 0 reads of `ke` (checked there): how the reset hypothesis restarts.

    Only those stages carry it: generation 0 and the baseline reset nothing, and with `ke` in their
    params `ke.reinit=zero` retrained both (the baseline is generations * train.steps long) to the
    same weights.
    """

    reinit: Literal["kaiming", "zero"]


class KnowledgeEvolutionTrainSection(SupervisedTrainSection):
    """`train` of KE: the same knobs, less the weight average (`train.ema_decay`), which is refused.

    Why: KE hands each generation's trained weights to the next, which keeps the fit hypothesis and
    re-initialises the reset hypothesis (Taha et al., 2021; their training keeps no average). With
    an EMA the stage's model, and so the next generation's start, was the average instead, while the
    docs said the last weights were handed on.
    """

    @field_validator("ema_decay")
    @classmethod
    def _hands_on_the_trained_weights(cls, value: float | None) -> float | None:
        if value is not None and value > 0:
            raise ValueError(
                f"expected null in KE, got {value}: each generation hands its trained (last) weights to the next, "
                "which re-initialises the reset hypothesis, so a weight average would become the next start "
                "and KE keeps none; remove train.ema_decay (or set train.ema_decay=null)"
            )
        return value


class KnowledgeEvolutionConfig(PipelineFile):
    """The whole KE pipeline file; `pipeline: ke` selects it."""

    pipeline: Literal["ke"] = "ke"
    name: SafeName = "ke"
    data: SupervisedDataSection = SupervisedDataSection()
    train: KnowledgeEvolutionTrainSection = KnowledgeEvolutionTrainSection()
    ke: KnowledgeEvolutionSection = KnowledgeEvolutionSection()


def _train_params(config: KnowledgeEvolutionConfig, steps: int) -> dict:
    """A train stage's params: the train section with `steps` (one generation's, or all of them for the baseline)."""
    return {
        "data": config.data,
        "model": config.model,
        **supervised_reads(config.train.model_copy(update={"steps": steps}), config.augment),
    }


def _evaluate(
    config: KnowledgeEvolutionConfig, name: str, model: str, evaluation: str, generation: int, prefix: str = ""
) -> Stage:
    """Evaluate `model`; a KELS generation's evaluation also reads the masks to score the slim network.

    Not with one generation: nothing evolves, the fit hypothesis was never trained apart, and its
    slim network scored chance (0.1000) in the class-balanced loss's table, which is a KE file of
    one generation; the slim columns read "-" there instead. Not with WELS either: it has no slim
    network, and the masks as an input reran `g00/evaluate` on a new `ke.split_rate` to the same scores.
    """
    io = {"split": SPLIT, "model": model, "evaluation": evaluation}
    if not prefix and config.ke.generations > 1 and config.ke.split_mode == "kels":
        io["masks"] = MASKS
    params = {"data": config.data, "batch_size": config.label.batch_size, "metric_prefix": prefix}
    stage = refs.make_stage(
        name, refs.evaluate_network, io, (evaluation,), params, config.resources.evaluate, generation
    )
    if "masks" in io:  # what evaluate_network needs to score a slim network
        stage = dataclasses.replace(stage, reports=(*stage.reports, *refs.SLIM_METRICS))
    return stage


def generation_stages(config: KnowledgeEvolutionConfig, k: int, pretrained: str | None = None) -> list[Stage]:
    """Train and evaluate generation k; k > 0 reads the previous model and the generation-0 masks.

    ``pretrained`` starts generation 0 (later generations continue from the previous one).
    """
    io = {"split": SPLIT, "model": gen(k, "model")}
    params = _train_params(config, config.train.steps)
    if k > 0:
        io.update({"previous": gen(k - 1, "model"), "masks": MASKS})
        params["ke"] = part(ResetInit, config.ke)
    else:
        io, params = starting(io, params, config, pretrained)
    train = refs.make_stage(
        gen(k, "train"), refs.train_network, io, (gen(k, "model"),), params, config.resources.train, k
    )
    return [train, _evaluate(config, gen(k, "evaluate"), gen(k, "model"), gen(k, "evaluation"), k)]


def baseline_stages(config: KnowledgeEvolutionConfig, pretrained: str | None = None) -> list[Stage]:
    """One network trained as long as all generations together (the compute-matched N1), from the same start."""
    last = config.ke.generations - 1
    params = {**_train_params(config, config.train.steps * config.ke.generations), "metric_prefix": BASELINE_PREFIX}
    io, params = starting({"split": SPLIT, "model": "baseline/model"}, params, config, pretrained)
    train = refs.make_stage(
        "baseline/train", refs.train_network, io, ("baseline/model",), params, config.resources.train, last
    )
    return [
        train,
        _evaluate(config, "baseline/evaluate", "baseline/model", "baseline/evaluation", last, BASELINE_PREFIX),
    ]


def masks_stages(config: KnowledgeEvolutionConfig) -> list[Stage]:
    """`g00/split_masks`, drawn once for every later generation; none with one generation.

    Why none: the masks are read by the resets of generations 1 on and by the evaluations that score
    the slim network, which one generation leaves out (`_evaluate`). The class-balanced loss's file
    (KE with one generation) drew masks nothing read and logged their `split_masks/*` metrics.
    """
    if config.ke.generations == 1:
        return []
    shapes = unread_as_default(config.model, ("dropout", "stochastic_depth"))  # the masks follow the weights' shapes
    params = {"data": config.data, "model": shapes, "ke": part(MaskSplit, config.ke)}
    io = {"split": SPLIT, "masks": MASKS}
    return [refs.make_stage(gen(0, "split_masks"), refs.make_masks, io, (MASKS,), params, config.resources.data, 0)]


def build(config: KnowledgeEvolutionConfig) -> Pipeline:
    """Unroll the generations into a static DAG; the masks stage runs once, before g00/train's evaluation needs it."""
    first = split_stage(config)
    start, pretrained = start_stages(config)
    generations = [s for k in range(config.ke.generations) for s in generation_stages(config, k, pretrained)]
    baseline = baseline_stages(config, pretrained) if config.ke.compute_matched_baseline else []
    stages = [first, *start, *masks_stages(config), *generations, *baseline]
    return pipeline_of(config, stages)


SUMMARY = {
    **ACCURACY_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "tail_recall": "evaluate/tail_recall",  # long-tailed data (the class-balanced loss's config)
    "slim_accuracy": "evaluate/slim_accuracy",
    "slim_params": "evaluate/slim_params",
    "dense_params": "evaluate/dense_params",
    "baseline (compute-matched)": "evaluate/baseline_balanced_accuracy",
}


SPEC = PipelineSpec(
    "ke", KnowledgeEvolutionConfig, build, preflight_with_unused_knobs(preflight_supervised, build), SUMMARY
)
