"""A run made by a plug-in pipeline, read where the plug-in is not installed: install it, not edit the record.

`relay generations RUN` (or `relay.predict`) of such a run said "set `pipeline:` at the top of the file",
pointing the user at the run's saved config, which must not be edited.
"""

from __future__ import annotations

import pytest

from orchestrator.cli.run.run_record import load_saved_config
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES


def test_a_saved_run_of_a_pipeline_not_installed_here_says_to_install_it() -> None:
    with pytest.raises(ConfigError) as refused:
        load_saved_config("pipeline: mycrest\nname: mine\n", "runs/my-a/config.yaml", PIPELINES)
    said = str(refused.value)
    assert "the run was made by pipeline 'mycrest', which no package installed here declares" in said
    assert "install the package that provides it" in said and "crest" in said
    assert "set `pipeline:`" not in said
