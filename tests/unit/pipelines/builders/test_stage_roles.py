"""`resources.<role>` settings that would do nothing are refused before anything runs.

A role the pipeline has no stage for (KE's `resources.filter`) was accepted and ignored, and
workers > 1 for a stage whose body cannot divide its work ran the whole job on every worker.
"""

from __future__ import annotations

import pytest

from orchestrator.dag import Parallelism
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES
from pipelines.schema import ROLE_STAGES
from tests.unit.pipelines.helpers import config, problems


def built(name: str, **overrides: object):
    spec = PIPELINES[name]
    return spec.build(config(spec.config_model, **overrides))


def build_problems(name: str, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        built(name, **overrides)
    return str(info.value)


def stage_roles(name: str) -> set[str]:
    """The `resources.<role>` keys of the stages the pipeline builds from its defaults: what its file may set.

    Read from the built DAG, not from a list here, so that a new registered pipeline is checked as it is.
    """
    spec = PIPELINES[name]
    return {stage.role for stage in spec.build(spec.config_model()).stages}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_stage_role_is_one_the_refusal_can_name(name: str) -> None:
    """A role missing from ROLE_STAGES is refused in other pipelines' files only as an unknown key."""
    unnamed = stage_roles(name) - set(ROLE_STAGES)
    assert not unnamed, f"{name}: stage roles {sorted(unnamed)} have no entry in pipelines/schema.py ROLE_STAGES"


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_role_the_pipeline_has_no_stage_for_is_refused_naming_the_roles_it_has(name: str) -> None:
    spec, roles = PIPELINES[name], stage_roles(name)
    assert {"data", "train", "evaluate"} <= roles, "every pipeline has these (StageRoles)"
    for role in set(ROLE_STAGES) - roles:
        try:
            config(spec.config_model, **{f"resources.{role}.num_cpus": 2})
        except ConfigError as exc:
            text = str(exc)
        else:
            pytest.fail(
                f"{name}: resources.{role} is accepted, but the pipeline builds no {role} stage, so it would do "
                "nothing; declare the pipeline's `resources` with a StageRoles subclass of its roles alone "
                "(pipelines/schema.py)"
            )
        assert f"no {role} stage" in text and f"remove resources.{role}" in text
        named = text.split("its stage roles are ", 1)[1].split(":", 1)[0]
        assert set(named.split(", ")) == roles, text
    for role in roles:
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


def whole_roles(name: str) -> set[str]:
    """The roles that cover a stage whose body runs whole (no ``splits_work``) in the pipeline's default DAG."""
    spec = PIPELINES[name]
    return {stage.role for stage in spec.build(spec.config_model()).stages if not stage.fn.splits_work}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_roles_that_cover_a_stage_run_whole_refuse_workers(name: str) -> None:
    """Every role but CReST's train and the labeling roles, read from the built stages: a new pipeline as it is."""
    for role in whole_roles(name):
        assert f"resources.{role}.workers" in build_problems(name, **{f"resources.{role}.workers": 3}), role
    for role in stage_roles(name) - whole_roles(name):
        built(name, **{f"resources.{role}.workers": 3})  # the stages divide the work


def test_splits_and_evaluations_run_whole_everywhere_and_crest_training_divides_its_work() -> None:
    """What the derived test above rests on, pinned: a body's ``splits_work`` flipped by mistake fails here."""
    for name in sorted(PIPELINES):
        assert {"data", "evaluate"} <= whole_roles(name), name
    assert "train" not in whole_roles("crest") and "train" in whole_roles("noisy_student")


def test_crest_splits_training_and_labeling_over_workers() -> None:
    pipeline = built("crest", **{"resources.train.workers": 2, "resources.pseudo_label.workers": 2})
    assert pipeline.stage("g00/train").resources.workers == 2
    assert pipeline.stage("g00/pseudo_label").resources.workers == 2


def test_crest_training_workers_are_refused_where_the_role_also_covers_the_pretext_stage() -> None:
    text = build_problems("crest", **{"resources.train.workers": 2, "pretext.method": "rotnet"})
    assert "resources.train covers pretext/pretrain, g00/train" in text
    assert "pretext/pretrain runs on one worker" in text
