"""`relay resume` refuses a run whose pinned data changed since it started, and only then.

A pin replacing a value the run record holds is a change; a pin filling a value the record left
empty (a record written before that pin existed) is not, and the resume goes on with the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.cli.run.resume_checks import check_data_unchanged
from orchestrator.errors import ConfigError
from pipelines.registry import PIPELINES

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def spec_pinning(pins: dict[str, object] | Callable[[object], dict[str, object]]):
    """The crest pipeline with its data pins replaced by ``pins`` (a fixed mapping, or a function of the config)."""
    spec = PIPELINES["crest"]
    pin = pins if callable(pins) else (lambda config: pins)
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, pins=pin))


def test_a_pin_that_replaces_the_recorded_value_is_refused_naming_the_key_and_both_values() -> None:
    config = load_pipeline_config(SMOKE, ["seed=3"], PIPELINES)[1]
    with pytest.raises(ConfigError) as raised:
        check_data_unchanged(spec_pinning({"seed": 4}), config, "r1", "config.yaml")
    (problem,) = raised.value.problems
    assert problem.startswith("seed: the data changed since run r1 started (seed was 3, is now 4)")
    assert "Put the data back" in problem


def test_no_pin_or_a_pin_filling_an_empty_value_lets_the_resume_go_on() -> None:
    config = load_pipeline_config(SMOKE, [], PIPELINES)[1]
    assert config.data.root_digest is None
    check_data_unchanged(spec_pinning({}), config, "r1", "config.yaml")
    check_data_unchanged(spec_pinning({"data.root_digest": "ab" * 32}), config, "r1", "config.yaml")


def test_data_the_preflight_cannot_read_is_refused_before_any_pin_is_computed(tmp_path: Path) -> None:
    config = load_pipeline_config(SMOKE, [], PIPELINES)[1]
    gone = config.model_copy(
        update={"data": config.data.model_copy(update={"name": "imagefolder", "root": str(tmp_path)})}
    )

    def pins(config: object) -> dict[str, object]:
        raise AssertionError("pins are computed only on data the preflight read")

    with pytest.raises(ConfigError) as raised:
        check_data_unchanged(spec_pinning(pins), gone, "r1", "config.yaml")
    assert raised.value.problems[0].startswith("data.root:")
