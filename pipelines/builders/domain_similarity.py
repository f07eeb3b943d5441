"""Domain-similarity source selection (Cui et al., CVPR 2018) as a Relay pipeline: rank, pretrain on the best, fine-tune.

`data/split` (the target: few labels) -> `g00/similarity` (every candidate in `domain.sources` and
the target's labeled images embedded by one feature extractor; EMD between their class-mean sets
weighted by class size, similarity exp(-gamma EMD); the ranking table, logged by name as
`similarity/ranking.csv` on gen-00, and the chosen source's name as the tag `domain.chosen_source`
on the pipeline run) -> `g00/train` (`model` on the most similar source, from the `init.source` or
pretext weights when set) -> `g01/train` (the target, from g00's weights with a new classifier,
`init`'s freezing and backbone rate) + `g01/evaluate`; `domain.baseline` adds the target network
from random weights (`baseline_*` in generation 1). The extractor (`domain.extractor`) is the pixels
themselves, or the backbone of the `init.source` or pretext model.

Candidate sources are datasets, optionally transformed (pipelines.domains.derive_source): a source
of the target's own dataset is made from the target split's UNLABELED images, so the target's
labeled and test images never enter a source.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.config import SafeName, StrictModel
from orchestrator.dag import Pipeline
from orchestrator.registry import PipelineSpec
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
    starting,
    supervised_reads,
    train_and_evaluate,
)
from pipelines.data import DATASET_REQUIRES_ROOT, image_shape
from pipelines.datasets.catalog import SHARDED
from pipelines.schema import DataSection, DatasetName, FolderPath, PipelineFile, check_warmup_fits, part
from pipelines.stages import refs

RANKING = gen(0, "ranking")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # it names metrics (similarity/<name>)


class CandidateSource(StrictModel):
    """One candidate source: a dataset, optionally transformed (none, noise: std strength x 255, rotate: strength
    degrees, pure_noise: random pixels and labels)."""

    name: str
    dataset: DatasetName = "digits"
    root: FolderPath = None  # absolute, as data.root is: the two are compared to tell the target's own dataset
    transform: Literal["none", "noise", "rotate", "pure_noise"] = "none"
    strength: float = Field(0.0, ge=0.0)

    @field_validator("name")
    @classmethod
    def _metric_safe(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError(f"expected letters, digits, '.', '_' or '-' (it names metrics), got {value!r}")
        return value

    @model_validator(mode="after")
    def _root(self) -> CandidateSource:
        if self.dataset in DATASET_REQUIRES_ROOT and not self.root:
            raise ValueError(f"dataset {self.dataset!r} reads local files: set the source's root")
        return self


DEFAULT_SOURCES = [
    CandidateSource(name="noisy-digits", transform="noise", strength=0.25),
    CandidateSource(name="rotated-digits", transform="rotate", strength=90.0),
    CandidateSource(name="templates", dataset="synthetic"),
    CandidateSource(name="pure-noise", transform="pure_noise"),
]


class DomainSection(StrictModel):
    """Source selection (docs/ALGORITHMS.md, Domain similarity): the candidates, gamma (paper: 0.01), pretraining length.

    extractor "pixels" embeds images as their pixels; "pretrained" with the backbone of the
    `init.source` or pretext model (the paper's network trained on a large dataset).
    """

    sources: list[CandidateSource] = DEFAULT_SOURCES
    gamma: float = Field(0.01, gt=0.0)
    extractor: Literal["pixels", "pretrained"] = "pixels"
    pretrain_steps: int = Field(300, gt=0)
    baseline: bool = True

    @field_validator("sources")
    @classmethod
    def _some_distinct_sources(cls, value: list[CandidateSource]) -> list[CandidateSource]:
        if not value:
            raise ValueError("the candidate list is empty; list at least one source to rank (name, dataset, transform)")
        names = [source.name for source in value]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"source names must be distinct; {doubled} appear more than once")
        return value


class DomainRanking(StrictModel):
    """What the similarity stage reads of `domain`: the candidates, gamma and the extractor (not the pretraining)."""

    sources: list[CandidateSource]
    gamma: float
    extractor: Literal["pixels", "pretrained"]


class DomainPretraining(StrictModel):
    """What the source pretraining reads of `domain`: the candidates (to build the best) and its length."""

    sources: list[CandidateSource]
    pretrain_steps: int


class DomainDataSection(DataSection):
    """`data` of source selection: a balanced target with a tenth labeled (the rest makes the target-derived sources)."""

    imbalance_ratio: float = Field(1.0, ge=1.0)
    labeled_fraction: float = Field(0.1, gt=0.0, le=1.0)


class DomainConfig(PipelineFile):
    """The whole source-selection pipeline file; `pipeline: domain_similarity` selects it."""

    pipeline: Literal["domain_similarity"] = "domain_similarity"
    name: SafeName = "domain-similarity"
    data: DomainDataSection = DomainDataSection()
    domain: DomainSection = DomainSection()

    @model_validator(mode="after")
    def _pretraining_fits_its_warmup(self) -> DomainConfig:
        check_warmup_fits(self.domain.pretrain_steps, self.train, "domain.pretrain_steps")
        return self

    @model_validator(mode="after")
    def _sharded_sources_are_the_target(self) -> DomainConfig:
        """A `parquet` source must be the target's own sharded dataset, the only one a source can read.

        Why: a source names no `uri`, so any other `parquet` source passed validate and the preflight
        and failed when the similarity stage ran ("unknown dataset 'parquet'").
        """
        for index, source in enumerate(self.domain.sources):
            if source.dataset == SHARDED and (self.data.name != SHARDED or source.root is not None):
                raise ValueError(
                    f"domain.sources[{index}].dataset: 'parquet' reads only the target's own sharded dataset (a "
                    f"source has no uri), and {self._target()}; use data.name=parquet with this source's root "
                    "unset, or make the source of a dataset read from memory or a folder (digits, synthetic, "
                    "cifar10, cifar100, imagefolder)"
                )
        return self

    def _target(self) -> str:
        if self.data.name != SHARDED:
            return f"the target is data.name {self.data.name!r}"
        return "this source sets a root, which a sharded dataset has none of"

    @model_validator(mode="after")
    def _extractor_has_weights(self) -> DomainConfig:
        if self.domain.extractor == "pretrained" and self.init.source is None and self.pretext.method == "none":
            raise ValueError(
                "domain.extractor: 'pretrained' needs a model to embed with; set init.source or pretext.method, "
                "or use domain.extractor=pixels"
            )
        return self


def build(config: DomainConfig) -> Pipeline:
    """split -> similarity ranking -> pretraining on the best source -> fine-tuning (and the from-scratch baseline)."""
    res = config.resources
    first = split_stage(config)
    start, pretrained = start_stages(config)
    rank_io = {"split": SPLIT, "ranking": RANKING}
    if config.domain.extractor == "pretrained":
        rank_io["pretrained"] = pretrained
    rank_params = {
        "data": config.data,
        "domain": part(DomainRanking, config.domain),
        "batch_size": config.label.batch_size,
        "source_seed": config.seed,
    }
    pretrain_io, pretrain_params = starting(
        {"split": SPLIT, "ranking": RANKING, "model": gen(0, "model")},
        {
            "data": config.data,
            "model": config.model,
            **supervised_reads(config.train.model_copy(update={"steps": config.domain.pretrain_steps}), config.augment),
            "domain": part(DomainPretraining, config.domain),
            "source_seed": config.seed,
        },
        config,
        pretrained,
        head="reset",
    )
    pretrain = refs.make_stage(
        gen(0, "train"), refs.pretrain_on_source, pretrain_io, (gen(0, "model"),), pretrain_params, res.train, 0
    )
    stages = [
        first,
        *start,
        refs.make_stage(gen(0, "similarity"), refs.rank_sources, rank_io, (RANKING,), rank_params, res.data, 0),
        pretrain,
    ]
    target = {"data": config.data, "model": config.model, **supervised_reads(config.train, config.augment)}
    stages += train_and_evaluate(config, "g01", 1, config.data, SPLIT, target, gen(0, "model"))
    if config.domain.baseline:
        scratch = {**target, "metric_prefix": BASELINE_PREFIX}
        stages += train_and_evaluate(config, "baseline", 1, config.data, SPLIT, scratch, None)
    return pipeline_of(config, stages)


def source_problems(config: DomainConfig) -> list[str]:
    """Candidates whose images cannot meet the target's: another image shape, or no unlabeled target images to use."""
    problems = []
    target = image_shape(config.data.name, config.data.image_size)
    for index, source in enumerate(config.domain.sources):
        key = f"domain.sources[{index}] ({source.name})"
        shape = image_shape(source.dataset, config.data.image_size)  # sources are read at the target's size
        if target is not None and shape is not None and shape != target:
            problems.append(
                f"{key}: dataset {source.dataset!r} has images {'x'.join(map(str, shape))}, the target "
                f"{config.data.name!r} {'x'.join(map(str, target))}: no overlap in image shape to transfer through; "
                "choose a source with the target's image shape"
            )
        same = source.dataset == config.data.name and source.root == config.data.root
        if same and config.data.labeled_fraction >= 1.0:
            problems.append(
                f"{key}: a source of the target's own dataset is made from its unlabeled images, and "
                "data.labeled_fraction 1 leaves none; lower data.labeled_fraction"
            )
    return problems


def preflight(config: DomainConfig) -> list[str]:
    """The data checks, then the candidates against the target."""
    return preflight_supervised(config) + source_problems(config)


SUMMARY = {
    **ACCURACY_COLUMNS,
    **PRETEXT_PROBE_COLUMNS,
    "from scratch": "evaluate/baseline_balanced_accuracy",
    "similarity": "similarity/*",
}
SPEC = PipelineSpec("domain_similarity", DomainConfig, build, preflight, SUMMARY)
