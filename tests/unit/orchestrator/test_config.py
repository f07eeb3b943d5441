"""Config loading, dotted overrides and validation that reports every problem at once."""

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field, ValidationError

from orchestrator.config import (
    RunSettings,
    StrictModel,
    TrackingSettings,
    apply_overrides,
    artifact_uri,
    load_yaml,
    resolve_workspace,
    tracking_uri,
    validate_config,
)
from orchestrator.errors import ConfigError


class Train(StrictModel):
    steps: int = Field(gt=0)
    lr: float = 0.03
    schedule: Literal["cosine", "fixmatch"] = "cosine"


class Crest(StrictModel):
    alpha: float = Field(default=3.0, gt=0)


class Toy(StrictModel):
    name: str
    train: Train
    crest: Crest = Crest()
    tags: list[int] = []  # noqa: RUF012 (pydantic copies field defaults)


# --- load_yaml ------------------------------------------------------------------------


def test_load_yaml_reads_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  steps: 3\n")
    assert load_yaml(path) == {"name": "x", "train": {"steps": 3}}


def test_load_yaml_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found: .*nope.yaml"):
        load_yaml(tmp_path / "nope.yaml")


def test_load_yaml_malformed_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain:\n  steps: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert "malformed YAML at line 4" in str(info.value)
    assert info.value.source == str(path)


def test_load_yaml_rejects_non_mapping_top_level(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping .*got list"):
        load_yaml(path)


def test_load_yaml_empty_file_is_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_yaml(path) == {}


# --- apply_overrides -------------------------------------------------------------------


def test_overrides_parse_values_with_yaml_and_create_sections():
    base = {"train": {"steps": 10}}
    out = apply_overrides(base, ["train.steps=3", "train.lr=0.1", "a.b.c=[1, 2]", "name=hello", "x.flag=true"])
    assert out == {"train": {"steps": 3, "lr": 0.1}, "a": {"b": {"c": [1, 2]}}, "name": "hello", "x": {"flag": True}}
    assert base == {"train": {"steps": 10}}  # input untouched


def test_overrides_accept_a_mapping_of_typed_values():
    out = apply_overrides({"train": {"steps": 10}}, {"train.steps": 5, "augment.magnitude": 9})
    assert out == {"train": {"steps": 5}, "augment": {"magnitude": 9}}


def test_overrides_value_may_contain_equals_sign():
    assert apply_overrides({}, ["run.note=a=b"]) == {"run": {"note": "a=b"}}


def test_overrides_report_every_malformed_item():
    with pytest.raises(ConfigError) as info:
        apply_overrides({"train": {"steps": 10}}, ["train.steps.max=3", "noequals", "=5", "a..b=1"])
    problems = info.value.problems
    assert len(problems) == 4
    assert "inside 'train.steps', which is a number (got 10)" in problems[0]
    assert "'noequals': expected key=value" in problems[1]
    assert "'=5': expected key=value" in problems[2]
    assert "a..b: empty segment" in problems[3]


def test_an_override_of_one_list_item_says_to_override_the_list():
    """`domain.sources[0].strength=abc` made a key named "sources[0]"; the message then read
    "domain: unknown key (did you mean 'domain'?)"."""
    with pytest.raises(ConfigError) as info:
        apply_overrides({"domain": {"sources": [{"strength": 1}]}}, ["domain.sources[0].strength=abc"])
    assert info.value.problems == [
        "domain.sources[0].strength: one item of a list cannot be set on the command line; "
        "override the whole list, e.g. domain.sources='[...]' with every item written out"
    ]


# --- validate_config -------------------------------------------------------------------


def test_validate_returns_frozen_model():
    cfg = validate_config(Toy, {"name": "x", "train": {"steps": 5}}, "toy.yaml")
    assert cfg.train.steps == 5
    assert cfg.crest.alpha == 3.0
    with pytest.raises(ValidationError):
        cfg.name = "y"


def test_validate_collects_every_problem_with_dotted_keys():
    data = {
        "name": "x",
        "train": {"steps": -1, "stepz": 3, "schedule": "linear"},
        "crest": {"alpha": "big"},
        "tags": [1, "two"],
        "extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        validate_config(Toy, data, "toy.yaml")
    err = info.value
    text = "\n".join(err.problems)
    assert err.source == "toy.yaml"
    assert len(err.problems) == 6, text
    assert "train.steps: must be > 0 (got -1 of type int)" in text
    assert "train.stepz: unknown key (did you mean 'steps'?); valid keys: lr, schedule, steps" in text
    assert "train.schedule: must be 'cosine' or 'fixmatch' (got 'linear' of type str)" in text
    assert "crest.alpha: must be a valid number" in text and "(got 'big' of type str)" in text
    assert "tags[1]: must be a valid integer" in text
    assert "extra: unknown key; valid keys: crest, name, tags, train" in text


def test_a_value_where_a_section_goes_and_a_section_where_a_value_goes_say_which_is_which():
    """pydantic's words were "a valid dictionary or instance of Train" and, for a section given as a value, none."""
    with pytest.raises(ConfigError) as info:
        validate_config(Toy, {"name": "x", "train": 5, "crest": {"alpha": {"a": 1}}}, "toy.yaml")
    text = "\n".join(info.value.problems)
    assert "train: must be a section of `key: value` settings (got 5 of type int); write train: with its keys" in text
    assert "crest.alpha: must be a valid number, not a section of settings (got keys a); write one value" in text


def test_validate_reports_missing_keys():
    with pytest.raises(ConfigError) as info:
        validate_config(Toy, {"train": {}}, "t")
    assert sorted(info.value.problems) == [
        "name: required key is missing; add it",
        "train.steps: required key is missing; add it",
    ]


def test_validate_rejects_non_mapping():
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        validate_config(Toy, ["a"], "t")


def test_validate_merges_union_member_errors_under_one_key():
    class U(StrictModel):
        size: int | str

    with pytest.raises(ConfigError) as info:
        validate_config(U, {"size": [1]}, "u")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("size: must be a valid integer")
    assert " or must be a valid string" in info.value.problems[0]


def test_text_that_yaml_read_as_a_number_is_told_to_be_quoted():
    """A digest prefix of digits only (``data.digest=1234567890123456``) parses as an int; the fix is quotes."""

    class Pin(StrictModel):
        digest: str | None = None
        tag: str = "x"

    with pytest.raises(ConfigError) as info:
        validate_config(Pin, {"digest": 1234567890123456, "tag": True}, "p")
    digest, tag = sorted(info.value.problems)
    assert digest.startswith("digest: must be text, but YAML reads the value as a number (1234567890123456)")
    assert "\"digest='...'\" on the command line" in digest
    assert tag.startswith("tag: must be text, but YAML reads the value as a yes/no (True)")


# --- settings ---------------------------------------------------------------------------


def test_workspace_setting_then_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "env"))
    assert resolve_workspace(RunSettings(workspace=str(tmp_path / "ws"))) == tmp_path / "ws"
    assert resolve_workspace(RunSettings()) == tmp_path / "env"
    monkeypatch.delenv("RELAY_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    assert resolve_workspace(RunSettings()) == tmp_path / "relay-workspace"


def test_default_tracking_and_artifact_uris_live_in_the_workspace(tmp_path):
    run = RunSettings(workspace=str(tmp_path))
    assert tracking_uri(run, TrackingSettings()) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking_uri(run, TrackingSettings(uri="http://mlflow:5000")) == "http://mlflow:5000"
    assert artifact_uri(run) == str(tmp_path / "artifacts")
    assert artifact_uri(RunSettings(artifact_uri="s3://bucket/relay")) == "s3://bucket/relay"


def test_run_settings_validate_executor_and_cpus():
    with pytest.raises(ConfigError) as info:
        validate_config(RunSettings, {"executor": "spark", "num_cpus": 0}, "run")
    text = "\n".join(info.value.problems)
    assert "executor: must be 'ray' or 'local'" in text
    assert "num_cpus: must be >= 1 (got 0 of type int)" in text
    assert isinstance(resolve_workspace(RunSettings()), Path)


def test_override_with_invalid_yaml_value_says_to_quote_it():
    with pytest.raises(ConfigError, match=r"train.lrs: value '\[1,' is not valid YAML .*quote it"):
        apply_overrides({}, ["train.lrs=[1,"])
