"""`relay validate` of a PBT / PB2 sweep that would run one trial at a time warns as `relay tune` does.

Why: `relay validate FILE tune.scheduler=pbt` on 2 cores passed in silence, where `relay tune` warned that PBT
running one trial at a time perturbs nothing; the line is `relay tune`'s own (``lone_population_warning``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_yaml, validate_config
from orchestrator.tune.sweep import lone_population_warning
from pipelines.builders import crest
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE


def warnings_of(argv: list[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("scheduler", ["pbt", "pb2"])
def test_a_population_on_two_cores_is_warned_of_with_relay_tunes_line(
    cwd: Path, caplog: pytest.LogCaptureFixture, scheduler: str
) -> None:
    overrides = [f"tune.scheduler={scheduler}", "run.num_cpus=2"]
    if scheduler == "pb2":  # pb2 needs numeric ranges
        overrides.append("tune.space={crest.t_min: {uniform: [0.3, 0.9]}, train.lr: {loguniform: [0.01, 0.1]}}")
    said = warnings_of(["validate", str(SMOKE), *overrides], caplog)
    settings = validate_config(crest.CrestConfig, load_yaml(SMOKE)).tune.model_copy(update={"scheduler": scheduler})
    assert said == [lone_population_warning(settings, 1, 4, 2.0)]
    assert "Ray's 2 CPU(s) fit one trial" in said[0]
    assert list(cwd.iterdir()) == []


def test_one_trial_at_a_time_by_request_is_warned_of_on_any_machine(cwd: Path, caplog) -> None:
    argv = ["validate", str(SMOKE), "tune.scheduler=pbt", "tune.max_concurrent_trials=1", "run.num_cpus=16"]
    [said] = warnings_of(argv, caplog)
    assert said.startswith("tune.scheduler: pbt runs 1 trial at a time here (tune.max_concurrent_trials=1)")


@pytest.mark.parametrize(
    "overrides",
    [
        ["tune.scheduler=pbt", "run.num_cpus=16"],  # room for several trials at once
        ["tune.scheduler=pbt", "run.num_cpus=2", "tune.num_samples=1"],  # one trial: nothing to copy anyway
        ["tune.scheduler=asha", "run.num_cpus=2"],  # no population
    ],
)
def test_no_warning_where_relay_tune_gives_none(cwd: Path, caplog, overrides: list[str]) -> None:
    assert warnings_of(["validate", str(SMOKE), *overrides], caplog) == []
