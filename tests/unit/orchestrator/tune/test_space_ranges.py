"""A range of `tune.space` is refused, with what to write, when it is no range: not two ends, or equal ends.

Why: `{loguniform: [0.01]}` was `tune.space.train.lr.loguniform[1]: required key is missing; add it`, three
ends `Tuple should have at most 2 items after validation`, a text `must be a valid tuple`: the validator's
words, not the form to write. And `{uniform: [0.6, 0.6]}` was warned of as a key the config does not read
(it is read), while `relay tune` ran every trial with the one value.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from orchestrator.config import SearchDomain, validate_config
from orchestrator.errors import ConfigError
from pipelines.builders import crest
from tests.unit.orchestrator.cli.test_cli_writes_nothing import refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in
from tests.unit.orchestrator.tune.test_tune_config import SMOKE, plan, problems, smoke_data


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and no workspace from the shell: what a refused command writes shows there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELAY_WORKSPACE", raising=False)
    return tmp_path


def field_problems(space: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(crest.CrestConfig, smoke_data(space=space))
    return info.value.problems


# --- not two ends ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "args", "shown"),
    [
        ("loguniform", [0.01], "[0.01]"),
        ("loguniform", [0.01, 0.1, 0.5], "[0.01, 0.1, 0.5]"),
        ("loguniform", "0.01,0.1", "the text '0.01,0.1'"),
        ("uniform", 0.5, "0.5"),
        ("uniform", [0.3, "high"], "[0.3, high]"),
        ("uniform", [float("nan"), 0.5], "[.nan, 0.5]"),
        ("loguniform", {"low": 0.01, "high": 0.1}, "{high: 0.1, low: 0.01}"),
    ],
)
def test_a_real_range_that_is_not_two_ends_says_what_to_write(kind: str, args: object, shown: str) -> None:
    assert field_problems({"train.lr": {kind: args}}) == [
        f"tune.space.train.lr: {kind} takes [low, high] (two finite numbers), got {shown}; write e.g. "
        f"`{{{kind}: {'[0.01, 0.1]' if kind == 'loguniform' else '[0.3, 0.9]'}}}`"
    ]


@pytest.mark.parametrize(("args", "shown"), [([1], "[1]"), ([1, 2, 3], "[1, 2, 3]"), ([1.5, 3], "[1.5, 3]")])
def test_an_integer_range_that_is_not_two_integers_says_what_to_write(args: list, shown: str) -> None:
    assert field_problems({"augment.strong.num_ops": {"randint": args}}) == [
        f"tune.space.augment.strong.num_ops: randint takes [low, high] (two integers, both included), got {shown}; "
        "write e.g. `{randint: [1, 3]}`"
    ]


def test_ends_written_as_yaml_reads_them_are_still_taken() -> None:
    """PyYAML reads `1e-3` as text and pydantic as a number; a range of them was valid and stays so."""
    assert SearchDomain.model_validate({"loguniform": ["1e-3", "1e-1"]}).args == (0.001, 0.1)
    assert SearchDomain(randint=(1.0, 3.0)).args == (1, 3)


def test_a_boolean_end_keeps_the_message_that_says_yaml_read_a_boolean() -> None:
    [problem] = field_problems({"train.lr": {"loguniform": [True, 0.1]}})
    assert "YAML reads yes/no/on/off/true/false as booleans" in problem


def test_cli_names_the_range_and_the_form_once_exit_2_and_writes_nothing(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "tune.space.crest.t_min={uniform: [0.3]}"], cwd, capsys)
    [problem] = problems_in(err)
    assert problem.startswith("  - tune.space.crest.t_min: uniform takes [low, high] (two finite numbers), got [0.3]")


# --- equal ends ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "domain", "said"),
    [
        ("crest.t_min", {"uniform": [0.6, 0.6]}, "uniform [0.6, 0.6] has low equal to high"),
        ("train.lr", {"loguniform": [0.05, 0.05]}, "loguniform [0.05, 0.05] has low equal to high"),
        ("augment.strong.num_ops", {"randint": [2, 2]}, "randint [2, 2] draws only 2 (Relay's randint includes"),
    ],
)
def test_a_range_with_equal_ends_is_refused_naming_the_fix(key: str, domain: dict, said: str) -> None:
    [problem] = problems(smoke_data(space={key: domain, "crest.alpha": {"choice": [2, 3]}}))
    value = next(iter(domain.values()))[0]
    assert problem.startswith(f"tune.space.{key}: {said}"), problem
    assert f"so every trial gets {key}={value} and the key tells no trials apart; widen the range" in problem
    assert problem.endswith(f"set it in the config or on the command line ({key}={value})")
    assert "not read" not in problem


def test_a_randint_of_two_neighbours_draws_both_and_is_taken() -> None:
    """Relay's randint includes its high end (Ray's excludes it: `param_space` adds one), so [1, 2] is a range."""
    plan(smoke_data(space={"augment.strong.num_ops": {"randint": [1, 2]}}))
    [problem] = problems(smoke_data(space={"augment.strong.num_ops": {"randint": [1, 1]}}))
    assert "widen the range (randint [1, 2] draws 1 or 2)" in problem


@pytest.mark.parametrize("command", ["validate", "tune"])
def test_cli_refuses_equal_ends_exit_2_writes_nothing_and_warns_of_nothing(
    command: str, cwd: Path, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        err = refused([command, str(SMOKE), "tune.space.crest.t_min={uniform: [0.5, 0.5]}"], cwd, capsys)
    [problem] = problems_in(err)
    assert problem.startswith("  - tune.space.crest.t_min: uniform [0.5, 0.5] has low equal to high")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- a list of one value: warned of, not refused ----------------------------------------------


def test_a_choice_of_one_value_pins_the_key_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        plan(smoke_data(space={"crest.t_min": {"choice": [0.6]}, "crest.alpha": {"choice": [2, 3]}}))
    said = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert said == [
        "tune.space.crest.t_min: choice [0.6] has one value, so every trial gets crest.t_min=0.6: the key is "
        "pinned, as setting it in the config would pin it, and tells no trials apart; list more values to search it"
    ]
