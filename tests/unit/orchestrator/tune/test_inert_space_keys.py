"""A searched key that changes nothing a trial computes is said, by `relay validate` and `relay tune`, before any trial.

Why: `crest.t_min` searched with `crest.alignment=false`, or `crest.schedule` over two generations (which use only
T = 1 and T = t_min), gave trials that differed in name only: every trial ran the same stages, the later ones as
cache hits, and the sweep ranked copies. Told apart by the stages' fingerprints (``trial_work``), not by key names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import validate_config
from orchestrator.tune.trial_work import inert_keys, trial_work
from orchestrator.yaml_input import apply_overrides
from pipelines.builders import crest
from tests.unit.orchestrator.tune.test_tune_config import SMOKE, plan, smoke_data

SCHEDULE = "tune.space.crest.schedule={choice: [linear, cosine, step]}"


def inert(overrides: dict, space: dict) -> list[str]:
    data = apply_overrides(smoke_data(space=space), overrides)
    base = {key: value for key, value in data.items() if key != "tune"}
    settings = validate_config(crest.CrestConfig, data).tune
    return [line.split(":", 1)[0] for line in inert_keys(base, settings.space, crest.CrestConfig, crest.build)]


def test_a_key_the_config_does_not_read_is_told_apart_from_one_it_reads() -> None:
    space = {"crest.t_min": {"uniform": [0.3, 0.9]}, "train.lr": {"loguniform": [0.01, 0.1]}}
    assert inert({"crest.alignment": False}, space) == ["tune.space.crest.t_min"]
    assert inert({"crest.alignment": True}, space) == []


def test_the_schedule_over_two_generations_changes_nothing_and_over_three_it_does() -> None:
    space = {"crest.schedule": {"choice": ["linear", "cosine", "step"]}}
    assert inert({"crest.generations": 2}, space) == ["tune.space.crest.schedule"]
    assert inert({"crest.generations": 3}, space) == []


def test_the_seed_changes_what_a_trial_computes() -> None:
    assert inert({}, {"seed": {"choice": [0, 1]}}) == []


def test_the_work_of_two_configs_differs_where_a_stage_reads_the_key() -> None:
    def work(**overrides: object) -> dict[str, str]:
        config = validate_config(crest.CrestConfig, apply_overrides(smoke_data(), overrides))
        return trial_work(crest.build(config), config.seed)

    low, high = work(**{"crest.t_min": 0.3}), work(**{"crest.t_min": 0.9})
    assert {name for name in low if low[name] != high[name]} == {"g01/train", "g01/evaluate"}


def test_validate_warns_and_still_accepts_the_file(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="relay"):
        assert main(["validate", str(SMOKE), SCHEDULE]) == 0
    said = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].startswith(
        "tune.space.crest.schedule: no value of choice ['linear', 'cosine', 'step'] changes what a trial computes"
    )
    assert list(tmp_path.iterdir()) == []


def test_tune_warns_when_it_plans_the_sweep(caplog: pytest.LogCaptureFixture) -> None:
    space = {"crest.schedule": {"choice": ["linear", "step"]}, "crest.t_min": {"uniform": [0.3, 0.9]}}
    with caplog.at_level(logging.WARNING):
        plan(smoke_data(space=space))
    said = [record.getMessage().split(":", 1)[0] for record in caplog.records if record.levelno == logging.WARNING]
    assert said == ["tune.space.crest.schedule"]


def _warned(caplog: pytest.LogCaptureFixture, **tune_changes) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plan(smoke_data(**tune_changes))
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_repeats_of_a_grid_with_one_seed_are_said_to_be_copies(caplog: pytest.LogCaptureFixture) -> None:
    """num_samples 2 over a 2-point grid ran 4 trials scoring 0.195 / 0.195 / 0.34 / 0.34 (each repeat's stages cache
    hits of the first's), and best.yaml claimed a tie, without a word before the sweep."""
    grid = {"train.lr": {"grid": [0.01, 0.03]}}
    (said,) = _warned(caplog, num_samples=2, space=grid)
    assert said.startswith("tune.num_samples: 2 repeats each grid point with the same values and seed")
    assert "tune.space.seed" in said
    assert _warned(caplog, num_samples=1, space=grid) == []
    assert _warned(caplog, num_samples=2, space={**grid, "seed": {"grid": [0, 1]}}) == []
    assert _warned(caplog, num_samples=2, space={**grid, "crest.t_min": {"uniform": [0.3, 0.9]}}) == []


def test_validate_says_the_repeats_are_copies_too(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="relay"):
        assert main(["validate", str(SMOKE), "tune.space={train.lr: {grid: [0.01, 0.03]}}", "tune.num_samples=2"]) == 0
    said = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert [line.split(":", 1)[0] for line in said] == ["tune.num_samples"]
