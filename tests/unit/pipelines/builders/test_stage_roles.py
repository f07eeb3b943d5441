"""`resources.<role>` settings that would do nothing are refused before anything runs.

A role the pipeline has no stage for (KE's `resources.filter`) was accepted and ignored.
"""

from __future__ import annotations

import pytest

from pipelines.registry import PIPELINES
from tests.unit.pipelines.helpers import config, problems

# The stage roles each pipeline has, beyond data, train and evaluate, which every pipeline has.
EXTRA_ROLES = {
    "crest": {"pseudo_label", "rebalance"},
    "noisy_student": {"pseudo_label", "filter"},
    "lwf": {"pseudo_label"},
}


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
