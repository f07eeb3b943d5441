"""Knowledge Evolution (Taha et al., CVPR 2021) as a Relay pipeline: generations unrolled into stages.

`data/split` (a supervised split: with data.labeled_fraction 1 and data.imbalance_ratio 1 every
training image is labeled and classes are balanced) -> `g00/split_masks` (the fit/reset split,
drawn ONCE and persisted) -> `g00/train` (from scratch) -> `g01/train` (the LAST g00 checkpoint,
reset hypothesis re-initialised, new optimizer and LR schedule) -> ... Every `gKK/evaluate`
scores the dense network and, for KELS, the slim fit-hypothesis network.
`ke.compute_matched_baseline` adds `baseline/train` + `baseline/evaluate`: one network trained
generations * train.steps steps, logged (as `baseline_*`) in the last generation's run, beside
the KE result of the same compute. `ke.generations=2 ke.reinit=zero` is Dense-Sparse-Dense's
re-dense step (ALGORITHMS.md 8).
"""

from __future__ import annotations

from typing import Literal

from orchestrator.config import RunSettings, StrictModel, TrackingSettings, TuneSettings
from orchestrator.dag import Pipeline, Stage
from orchestrator.registry import PipelineSpec
from pipelines import split
from pipelines.builders.common import BASELINE_PREFIX, SPLIT, gen, stage
from pipelines.schema import (
    AugmentSection,
    KnowledgeEvolutionSection,
    LabelSection,
    ModelSection,
    StudentResourcesSection,
    SupervisedDataSection,
    SupervisedTrainSection,
)
from pipelines.stages import refs

MASKS = gen(0, "masks")


class KnowledgeEvolutionConfig(StrictModel):
    """The whole KE pipeline file; `pipeline: ke` selects it."""

    pipeline: Literal["ke"] = "ke"
    name: str = "ke"
    seed: int = 0
    data: SupervisedDataSection = SupervisedDataSection()
    model: ModelSection = ModelSection()
    train: SupervisedTrainSection = SupervisedTrainSection()
    augment: AugmentSection = AugmentSection()
    ke: KnowledgeEvolutionSection = KnowledgeEvolutionSection()
    label: LabelSection = LabelSection()
    resources: StudentResourcesSection = StudentResourcesSection()
    run: RunSettings = RunSettings()
    tracking: TrackingSettings = TrackingSettings()
    tune: TuneSettings | None = None


def _train_params(config: KnowledgeEvolutionConfig, steps: int) -> dict:
    train = {**config.train.model_dump(), "steps": steps}
    return {"data": config.data.model_dump(), "model": config.model.model_dump(), "train": train,
            "augment": config.augment.model_dump(), "ke": {"reinit": config.ke.reinit}}


def _evaluate(config: KnowledgeEvolutionConfig, name: str, model: str, evaluation: str, generation: int, prefix: str = "") -> Stage:
    io = {"split": SPLIT, "model": model, "evaluation": evaluation}
    if not prefix:
        io["masks"] = MASKS
    params = {"data": config.data.model_dump(), "batch_size": config.label.batch_size, "metric_prefix": prefix}
    return stage(name, refs.evaluate_network, io, (evaluation,), params, config.resources.evaluate, generation)


def generation_stages(config: KnowledgeEvolutionConfig, k: int) -> list[Stage]:
    """Train and evaluate generation k; k > 0 reads the previous model and the generation-0 masks."""
    io = {"split": SPLIT, "model": gen(k, "model")}
    if k > 0:
        io.update({"previous": gen(k - 1, "model"), "masks": MASKS})
    train = stage(gen(k, "train"), refs.train_network, io, (gen(k, "model"),),
                          _train_params(config, config.train.steps), config.resources.train, k)
    return [train, _evaluate(config, gen(k, "evaluate"), gen(k, "model"), gen(k, "evaluation"), k)]


def baseline_stages(config: KnowledgeEvolutionConfig) -> list[Stage]:
    """One network trained as long as all generations together (the compute-matched N1)."""
    last = config.ke.generations - 1
    params = {**_train_params(config, config.train.steps * config.ke.generations), "metric_prefix": BASELINE_PREFIX}
    train = stage("baseline/train", refs.train_network, {"split": SPLIT, "model": "baseline/model"}, ("baseline/model",),
                          params, config.resources.train, last)
    return [train, _evaluate(config, "baseline/evaluate", "baseline/model", "baseline/evaluation", last, BASELINE_PREFIX)]


def build(config: KnowledgeEvolutionConfig) -> Pipeline:
    """Unroll the generations into a static DAG; the masks stage runs once, before g00/train's evaluation needs it."""
    data = config.data.model_dump()
    split = stage("data/split", refs.split_supervised, {"split": SPLIT}, (SPLIT,), {"data": data}, config.resources.data, None)
    masks = stage(gen(0, "split_masks"), refs.make_masks, {"split": SPLIT, "masks": MASKS}, (MASKS,),
                          {"data": data, "model": config.model.model_dump(), "ke": config.ke.model_dump(include={"split_rate", "split_mode"})},
                          config.resources.data, 0)
    generations = [stage for k in range(config.ke.generations) for stage in generation_stages(config, k)]
    baseline = baseline_stages(config) if config.ke.compute_matched_baseline else []
    return Pipeline(config.name, [split, masks, *generations, *baseline])


def preflight(config: KnowledgeEvolutionConfig) -> list[str]:
    """Problems only the data can reveal (a missing root, too few images), as `key: message` lines."""
    return split.preflight_supervised(config.data.model_dump())


SPEC = PipelineSpec(
    name="ke",
    config_model=KnowledgeEvolutionConfig,
    build=build,
    preflight=preflight,
    summary={  # `relay generations` columns: header -> `<stage role>/<metric>`
        "balanced_accuracy": "evaluate/balanced_accuracy",
        "slim_accuracy": "evaluate/slim_accuracy",
        "slim_params": "evaluate/slim_params",
        "dense_params": "evaluate/dense_params",
        "baseline (compute-matched)": "evaluate/baseline_balanced_accuracy",
    },
)
