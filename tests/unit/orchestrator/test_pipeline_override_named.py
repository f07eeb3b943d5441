"""An unknown `pipeline` set on the command line names that override and points to it, not to the file.

Why: `relay validate smoke.yaml pipeline=cres` said "set `pipeline:` at the top of the file", where the file
said `crest`, without the `(set on the command line: ...)` every other override's problem has.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.registry import get_pipeline
from pipelines.registry import PIPELINES

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"


def problem(name: object, overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        get_pipeline(name, PIPELINES, source="smoke.yaml", overrides=overrides)
    (only,) = info.value.problems
    return only


def test_an_unknown_pipeline_from_an_override_names_it_and_the_fix_is_in_it() -> None:
    said = problem("cres", ["seed=1", "pipeline=crest", "pipeline=cres"])
    assert said.startswith("pipeline: expected one of crest, ")
    assert said.endswith("got 'cres'; give one of them in that override (set on the command line: pipeline=cres)")
    assert "top of the file" not in said


def test_an_unknown_pipeline_from_the_file_still_points_to_the_file() -> None:
    said = problem("cres", ["seed=1"])
    assert said.endswith("got 'cres'; set `pipeline:` at the top of the file")
    assert problem(None, []).endswith("got nothing; set `pipeline:` at the top of the file")


def test_overrides_of_the_python_api_are_named_as_theirs() -> None:
    with pytest.raises(ConfigError) as info:
        get_pipeline("cres", PIPELINES, overrides=["pipeline=cres"], origin="set by overrides")
    assert info.value.problems[0].endswith("(set by overrides: pipeline=cres)")


def test_the_cli_names_the_override_that_set_an_unknown_pipeline() -> None:
    """`relay validate smoke.yaml pipeline=cres`: the file-loading path hands its overrides to the check."""
    from orchestrator.cli.pipeline_files import load_pipeline_file

    with pytest.raises(ConfigError) as info:
        load_pipeline_file(str(SMOKE), ["pipeline=cres"])
    (only,) = info.value.problems
    assert only.endswith("(set on the command line: pipeline=cres)"), only
