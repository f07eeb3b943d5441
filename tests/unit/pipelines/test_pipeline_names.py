"""Every pipeline's `name` is a safe folder name: it becomes the runs' ids and `relay tune`'s sweep folder.

Four builders once redeclared `name: str` over the shared `SafeName`, and `relay tune` of such a
file with `name: ../../escaped` wrote its sweep outside the workspace.
"""

from __future__ import annotations

import pytest

from orchestrator.config import validate_config
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@pytest.mark.parametrize("name", ["../../escaped", "a/b", ""])
def test_every_pipeline_refuses_a_name_that_is_not_a_safe_folder_name(pipeline: str, name: str) -> None:
    spec = PIPELINES[pipeline]
    default = validate_config(spec.config_model, {"pipeline": pipeline}, source="t.yaml")
    assert validate_config(spec.config_model, {"pipeline": pipeline, "name": default.name}, source="t.yaml")
    with pytest.raises(ConfigError) as raised:
        validate_config(spec.config_model, {"pipeline": pipeline, "name": name}, source="t.yaml")
    assert any(problem.startswith("name:") and "not a safe name" in problem for problem in raised.value.problems)
