"""A key a stage does not read under the config's other settings is not in that stage's params.

Why: params are a stage's cache key, so such a key reran the stage to byte-identical output (`ke.reinit=zero`
retrained `g00/train` and the 1,500-step `baseline/train` of ke_digits.yaml) and the sweep's inert-key warning,
which compares fingerprints, could not say the key was inert. Told apart here as the warning does
(``trial_work``): which stages' fingerprints a new value changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.config import load_yaml, validate_config
from orchestrator.dag import Pipeline
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.tune.trial_work import trial_work
from orchestrator.yaml_input import apply_overrides
from pipelines.builders import (
    crest,
    distill,
    domain_similarity,
    fitnets,
    knowledge_evolution,
    lwf,
    noisy_student,
    transfer,
)

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
KE_LATER = {f"g{k:02d}/{role}" for k in range(1, 5) for role in ("train", "evaluate")}
STUDENTS = {"g01/train", "g01/evaluate", "g01/pseudo_label", "g01/filter", "g02/train", "g02/evaluate"}
KE_ALL = KE_LATER | {f"{role}/{step}" for role in ("g00", "baseline") for step in ("train", "evaluate")}
FITNETS_NETWORKS = {f"{role}/train" for role in ("g00", "g01", "kd", "baseline")}
DOMAIN_TARGET = {"g01/train", "g01/evaluate", "baseline/train", "baseline/evaluate"}
KE_TRAIN = {name for name in KE_ALL if name.endswith("/train")}
CREST_TRAIN = {"g00/train", "g01/train", "g02/train"}
RESIDUAL_ROTNET = {"pretext.method": "rotnet", "model.name": "wrn28_2"}  # stochastic depth needs residual blocks
CREST_ALL = {f"g{k:02d}/{role}" for k in range(3) for role in ("train", "evaluate")} | {
    f"g{k:02d}/{role}" for k in range(2) for role in ("pseudo_label", "rebalance")
}


def rerun(builder: ModuleType, file: str, base: dict, change: dict) -> set[str]:
    """The stages of ``file`` (with ``base`` applied) whose fingerprint ``change`` changes, added or removed ones too."""
    return changed(builder, file, base, change, lambda pipeline, seed: trial_work(pipeline, seed))


def rerun_alone(builder: ModuleType, file: str, base: dict, change: dict) -> set[str]:
    """The stages ``change`` reruns by their own params, their inputs held the same: what each stage reads itself,
    where an input made upstream would rerun it anyway (a hint stage reads the teacher that `train` trains)."""
    return changed(builder, file, base, change, lambda pipeline, seed: own_fingerprints(pipeline, seed))


def own_fingerprints(pipeline: Pipeline, seed: int) -> dict[str, str]:
    return {stage.name: fingerprint(stage, {}, "", seed) for stage in pipeline.stages}


def changed(builder: ModuleType, file: str, base: dict, change: dict, work_of: Callable) -> set[str]:
    def work(overrides: dict) -> dict[str, str]:
        config = validate_config(builder.SPEC.config_model, apply_overrides(load_yaml(CONFIGS / file), overrides))
        return work_of(builder.build(config), config.seed)

    before, after = work(base), work({**base, **change})
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


CASES = [  # (builder, file, base overrides, the change, the stages it must rerun)
    (knowledge_evolution, "ke_digits.yaml", {}, {"ke.reinit": "zero"}, KE_LATER),
    (
        knowledge_evolution,
        "ke_digits.yaml",
        {"ke.split_mode": "wels"},
        {"ke.split_rate": 0.7},
        {"g00/split_masks"} | KE_LATER,
    ),
    (knowledge_evolution, "class_balanced_digits.yaml", {}, {"ke.split_rate": 0.7}, set()),
    (noisy_student, "noisy_student_digits.yaml", {"noisy.label_type": "soft"}, {"noisy.label_smoothing": 0.3}, set()),
    (
        noisy_student,
        "noisy_student_digits.yaml",
        {"noisy.label_type": "hard"},
        {"noisy.label_smoothing": 0.3},
        STUDENTS,
    ),
    (crest, "crest_digits.yaml", {"crest.alignment": False}, {"crest.alignment_momentum": 0.9}, set()),
    (crest, "crest_digits.yaml", {"crest.alignment": False}, {"crest.p_model_estimate": "uniform_ema"}, set()),
    (crest, "crest_digits.yaml", {"crest.alignment": True}, {"crest.alignment_momentum": 0.9}, CREST_ALL),
    (crest, "crest_digits.yaml", {"pretext.method": "rotnet"}, {"pretext.temperature": 0.2}, set()),
    (crest, "crest_digits.yaml", {"pretext.method": "rotnet"}, {"pretext.projection_dim": 32}, set()),
    (crest, "crest_digits.yaml", {"pretext.method": "rotnet"}, {"augment.strong.cutout": 0.2}, CREST_ALL),
    (crest, "crest_digits.yaml", {"pretext.method": "simclr"}, {"pretext.probe": False}, {"pretext/probe"}),
    (
        crest,
        "crest_digits.yaml",
        {"pretext.method": "simclr"},
        {"pretext.temperature": 0.2},
        CREST_ALL | {"pretext/pretrain", "pretext/probe"},
    ),
    (lwf, "lwf_digits.yaml", {}, {"lwf.temperature": 3.0}, {"g01/train", "g01/evaluate"}),
    (lwf, "lwf_digits.yaml", {}, {"lwf.lambda_old": 0.5}, {"g01/train", "g01/evaluate"}),
    (lwf, "lwf_digits.yaml", {}, {"init.head": "keep"}, set()),
    (knowledge_evolution, "ke_digits.yaml", {}, {"train.focal_gamma": 2.0}, set()),
    (knowledge_evolution, "ke_digits.yaml", {"train.loss": "focal"}, {"train.focal_gamma": 2.0}, KE_ALL),
    (knowledge_evolution, "ke_digits.yaml", {"train.schedule": "cosine"}, {"train.warmup_steps": 30}, set()),
    (knowledge_evolution, "ke_digits.yaml", {}, {"train.warmup_steps": 30}, KE_ALL),
    (knowledge_evolution, "ke_digits.yaml", {}, {"augment.strong.cutout": 0.2}, set()),
    (distill, "distill_digits.yaml", {"train.augment": "none"}, {"augment.weak.pad_fraction": 0.25}, set()),
    (transfer, "transfer_digits.yaml", {}, {"train.focal_gamma": 3.0}, set()),
    (domain_similarity, "domain_similarity_digits.yaml", {}, {"train.steps": 250}, DOMAIN_TARGET),
]

ALONE = [  # stages an upstream change reruns through their inputs anyway, checked by their own params
    (fitnets, "fitnets_digits.yaml", {}, {"train.label_smoothing": 0.2}, FITNETS_NETWORKS),
    (fitnets, "fitnets_digits.yaml", {}, {"train.steps": 250}, FITNETS_NETWORKS),
    (lwf, "lwf_digits.yaml", {}, {"train.label_smoothing": 0.2}, {"g00/train"}),
    (crest, "crest_digits.yaml", RESIDUAL_ROTNET, {"model.stochastic_depth": 0.1}, CREST_TRAIN),
    (knowledge_evolution, "ke_digits.yaml", RESIDUAL_ROTNET, {"model.stochastic_depth": 0.1}, KE_TRAIN),
    (knowledge_evolution, "ke_digits.yaml", {}, {"model.dropout": 0.2}, KE_TRAIN),
]


def case_id(value: object) -> str:
    """A case's id: the builder's short name, the settings as `key=value`, the file and stages left out."""
    if isinstance(value, ModuleType):
        return value.__name__.rsplit(".", 1)[-1]
    if isinstance(value, dict):
        return ",".join(f"{key}={setting}" for key, setting in value.items()) or "defaults"
    return ""


@pytest.mark.parametrize(("builder", "file", "base", "change", "stages"), CASES, ids=case_id)
def test_a_new_value_reruns_only_the_stages_that_read_it(
    builder: ModuleType, file: str, base: dict, change: dict, stages: set[str]
) -> None:
    assert rerun(builder, file, base, change) == stages


@pytest.mark.parametrize(("builder", "file", "base", "change", "stages"), ALONE, ids=case_id)
def test_a_new_value_is_in_the_params_of_only_the_stages_that_read_it(
    builder: ModuleType, file: str, base: dict, change: dict, stages: set[str]
) -> None:
    assert rerun_alone(builder, file, base, change) == stages
