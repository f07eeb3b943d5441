"""An override of one list item by a dotted index (`data.classes.0=3`) gets the advice its `[0]` form gets.

Before, `relay validate smoke.yaml data.classes.0=3` said `data.classes: must be a valid list, not a section of
settings (got keys 0); write one value`: a list is not one value, and docs/CONFIG.md promises that one item of a
list cannot be set on the command line and the whole list is overridden instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.config import ConfigError, apply_overrides
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

WHOLE_LIST = (
    "one item of a list cannot be set on the command line; "
    "override the whole list, e.g. data.classes='[...]' with every item written out"
)


def test_a_dotted_index_into_a_list_the_file_leaves_out(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "data.classes.0=3"], cwd, capsys)
    assert f"data.classes: {WHOLE_LIST} (set on the command line: data.classes.0=3)" in err
    assert "write one value" not in err


def test_the_bracket_form_says_the_same(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "data.classes[0]=3"], cwd, capsys)
    assert f"data.classes[0]: {WHOLE_LIST}" in err


def test_a_dotted_index_into_a_list_the_file_sets(cwd: Path, capsys) -> None:
    data = yaml.safe_load(SMOKE.read_text())
    data["data"]["classes"] = [0, 1, 2]
    path = cwd / "classes.yaml"
    path.write_text(yaml.safe_dump(data))
    err = refused(["validate", str(path), "data.classes.0=3"], cwd, capsys)
    assert f"data.classes.0: {WHOLE_LIST}" in err


def test_apply_overrides_refuses_an_index_into_a_list() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides({"data": {"classes": [0, 1, 2]}}, ["data.classes.0=3"])
    assert info.value.problems == [f"data.classes.0: {WHOLE_LIST}"]


@pytest.mark.parametrize("override", ["crest.alpha.0=2", "data.classes.a=2"])
def test_a_section_where_one_value_goes_is_still_told_to_write_one_value(override: str, cwd: Path, capsys) -> None:
    """A number given a section, or a list given a key that is no index, is not an item of a list."""
    err = refused(["validate", str(SMOKE), override], cwd, capsys)
    assert "not a section of settings" in err and "write one value" in err
