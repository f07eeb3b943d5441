"""Bad `data` keys and overrides into a value say what is wrong and how to fix it, in the user's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import apply_overrides
from orchestrator.errors import ConfigError
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"


def validate(capsys: pytest.CaptureFixture, *overrides: str) -> list[str]:
    """The problems `relay validate smoke.yaml OVERRIDES` prints; it must exit 2."""
    assert main(["validate", str(SMOKE), *overrides]) == 2
    return problem_lines(capsys.readouterr().err)


@pytest.mark.parametrize(("key", "value"), [("data.uri", "/some/dir"), ("data.digest", "abc")])
def test_shard_keys_on_another_dataset_name_theirs_and_both_fixes(
    capsys: pytest.CaptureFixture, key: str, value: str
) -> None:
    """Said "dataset 'digits' uses data.root", which digits does not read, and no fix."""
    (problem,) = validate(capsys, f"{key}={value}")
    assert problem.startswith(f"{key}: data.uri and data.digest belong to dataset 'parquet'")
    assert "uses data.root" not in problem
    assert f"dataset 'digits' does not read them, so {key} would be ignored" in problem
    assert f"set data.name=parquet to train on the shards at data.uri, or remove {key}" in problem
    assert problem.endswith(f"(set on the command line: {key}={value})")


@pytest.mark.parametrize("classes", ["[]", "[3]"])
def test_too_few_classes_say_what_data_classes_needs(capsys: pytest.CaptureFixture, classes: str) -> None:
    """Said pydantic's "Value should have at least 2 items after validation, not 0 ... fix the value"."""
    (problem,) = validate(capsys, f"data.classes={classes}")
    assert problem.startswith(
        f"data.classes: expected at least 2 classes (a classifier needs two to tell apart), got {classes}"
    )
    assert "list two or more class numbers or names, e.g. [0, 1] or [cat, dog]" in problem
    assert "Value should have" not in problem


def test_a_key_set_inside_a_value_names_what_the_value_is() -> None:
    """`seed.x=3` said "which is a int"."""
    with pytest.raises(ConfigError) as info:
        apply_overrides({"seed": 0, "name": "a", "probe": []}, ["seed.x=3", "name.y=1", "probe.z=1"])
    assert [p.split(", which is ")[1].split(" (got")[0] for p in info.value.problems] == ["a number", "text", "a list"]
