"""A `tune.space` entry whose domain kind is misspelled is named as an unknown domain, with the closest kind.

`relay tune smoke.yaml 'tune.space.train.lr={unifrom: [0.01, 0.1]}'` (or `{normal: [0, 1]}`) was refused
as "entry 'train.lr' is nested like a config section ...; write `train.lr.unifrom: [0.01, 0.1]`", and
that line was then refused as "entry 'train.lr.unifrom' must be a domain". A section that is one, as
`augment: {strong: {...}}` or `train: {lr: [...]}` (train.lr is a setting), keeps that advice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import TuneSettings
from tests.unit.orchestrator.tune.test_tune_config import SMOKE, problems, smoke_data

KINDS = "domains: choice, grid, randint, uniform, loguniform"


def test_a_misspelled_kind_is_an_unknown_domain_with_the_closest_kind() -> None:
    [problem] = problems(smoke_data(space={"train.lr": {"unifrom": [0.01, 0.1]}}))
    assert problem == f"tune.space: unknown domain 'unifrom' for train.lr (did you mean 'uniform'?); {KINDS}"


def test_a_kind_relay_does_not_have_is_an_unknown_domain_without_a_guess() -> None:
    [problem] = problems(smoke_data(space={"train.lr": {"normal": [0, 1]}}))
    assert problem == f"tune.space: unknown domain 'normal' for train.lr; {KINDS}"


def test_a_config_key_under_the_entry_keeps_the_nested_section_advice() -> None:
    """`train: {lr: [...]}` is train.lr written nested, not a domain named `lr`."""
    [problem] = problems(smoke_data(space={"train": {"lr": [0.01, 0.1]}}))
    assert problem.startswith("tune.space: entry 'train' is nested like a config section")
    assert "unknown domain" not in problem


def test_a_tune_section_validated_alone_takes_only_a_close_name_for_a_kind() -> None:
    """Without the pipeline's model no key can be told a setting: only a near-kind is called a domain."""
    settings = {"metric": "evaluate/accuracy", "space": {"train.lr": {"unifrom": [0.01, 0.1]}}}
    with pytest.raises(ValueError, match="unknown domain 'unifrom' for train.lr"):
        TuneSettings.model_validate(settings)
    settings["space"] = {"train": {"lr": [0.01, 0.1]}}
    with pytest.raises(ValueError, match="nested like a config section"):
        TuneSettings.model_validate(settings)


@pytest.mark.parametrize("command", ["tune", "validate"])
def test_relay_tune_and_validate_name_the_unknown_domain_with_exit_2_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    output = ["--output", str(tmp_path / "sweep")] if command == "tune" else []
    assert main([command, str(SMOKE), "tune.space.train.lr={unifrom: [0.01, 0.1]}", *output]) == 2
    err = capsys.readouterr().err
    assert "unknown domain 'unifrom' for train.lr (did you mean 'uniform'?)" in err
    assert "nested like a config section" not in err
    assert not (tmp_path / "ws").exists() and not (tmp_path / "sweep").exists()


def test_a_file_with_the_misspelled_kind_is_refused_the_same(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(smoke_data(space={"train.lr": {"unifrom": [0.01, 0.1]}})))
    assert main(["validate", str(config)]) == 2
    assert "unknown domain 'unifrom' for train.lr (did you mean 'uniform'?)" in capsys.readouterr().err
