"""`resources.<role>` settings that would do nothing are refused before anything runs.

A role the pipeline has no stage for (KE's `resources.filter`) was accepted and ignored, and
workers > 1 for a stage whose body cannot divide its work ran the whole job on every worker.
"""

from __future__ import annotations

import pytest

from orchestrator.dag import Parallelism
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES
from tests.unit.pipelines.helpers import config, problems

# The stage roles each pipeline has, beyond data, train and evaluate, which every pipeline has.
EXTRA_ROLES = {
    "crest": {"pseudo_label", "rebalance"},
    "noisy_student": {"pseudo_label", "filter"},
    "lwf": {"pseudo_label"},
}


def built(name: str, **overrides: object):
    spec = PIPELINES[name]
    return spec.build(config(spec.config_model, **overrides))


def build_problems(name: str, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        built(name, **overrides)
    return str(info.value)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_role_the_pipeline_has_no_stage_for_is_refused_naming_the_roles_it_has(name: str) -> None:
    spec = PIPELINES[name]
    missing = {"pseudo_label", "filter", "rebalance"} - EXTRA_ROLES.get(name, set())
    for role in missing:
        text = problems(spec.config_model, **{f"resources.{role}.num_cpus": 2})
        assert f"no {role} stage" in text and f"remove resources.{role}" in text
        assert "its stage roles are data, train, evaluate" in text
    for role in EXTRA_ROLES.get(name, set()) | {"data", "train", "evaluate"}:
        config(spec.config_model, **{f"resources.{role}.num_cpus": 2})  # a role it has stays valid


def test_every_role_the_pipeline_lacks_is_named_in_its_one_problem() -> None:
    """Two foreign roles: the second was not mentioned until the first was removed."""
    text = problems(
        PIPELINES["ke"].config_model, **{"resources.pseudo_label.num_cpus": 1, "resources.rebalance.num_cpus": 1}
    )
    assert "no pseudo_label stage" in text and "rebalance stage" in text
    assert "remove resources.pseudo_label and resources.rebalance" in text


def test_noisy_student_labels_its_shards_on_several_workers_as_crest_does() -> None:
    """Its teachers label the unlabeled split shard by shard on actors, as CReST's models do."""
    pipeline = built("noisy_student", **{"resources.pseudo_label.workers": 2, "noisy.iterations": 2})
    for name in ("g00/pseudo_label", "g01/pseudo_label"):
        assert pipeline.stage(name).resources.workers == 2
        assert pipeline.stage(name).parallelism is Parallelism.SHARDS


@pytest.mark.parametrize("role", ["data", "evaluate", "train"])
def test_roles_whose_stages_run_whole_refuse_workers_in_every_pipeline_but_crest_training(role: str) -> None:
    for name in sorted(PIPELINES):
        if name == "crest" and role == "train":
            continue
        assert f"resources.{role}.workers" in build_problems(name, **{f"resources.{role}.workers": 3}), name


def test_crest_splits_training_and_labeling_over_workers() -> None:
    pipeline = built("crest", **{"resources.train.workers": 2, "resources.pseudo_label.workers": 2})
    assert pipeline.stage("g00/train").resources.workers == 2
    assert pipeline.stage("g00/pseudo_label").resources.workers == 2


def test_crest_training_workers_are_refused_where_the_role_also_covers_the_pretext_stage() -> None:
    text = build_problems("crest", **{"resources.train.workers": 2, "pretext.method": "rotnet"})
    assert "resources.train covers pretext/pretrain, g00/train" in text
    assert "pretext/pretrain runs on one worker" in text
