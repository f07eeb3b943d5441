"""A key given twice among the overrides, or beside a section above it, is refused as a key given twice in a file is.

Why: the last one silently won (`train.steps=3 train.steps=4` trained 4 steps), and a whole section given after a
key inside it dropped that key: the user believed a setting that was not the one used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import api, main
from orchestrator.config import TuneSettings, apply_overrides
from orchestrator.errors import ConfigError, InputError
from orchestrator.yaml_input import layered
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"


def refused(overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        apply_overrides({"train": {"steps": 10, "lr": 0.1}}, overrides)
    return info.value.problems


def test_a_key_given_twice_names_the_key_and_both_values() -> None:
    assert refused(["train.steps=3", "train.steps=4"]) == [
        "train.steps: given twice (train.steps=3, then train.steps=4); keep one of them"
    ]


def test_the_same_value_twice_is_refused_as_in_a_file() -> None:
    assert refused(["seed=1", "seed=1", "seed=1"]) == [
        "seed: given 3 times (seed=1, then seed=1, then seed=1); keep one of them"
    ]


@pytest.mark.parametrize("overrides", [["train={steps: 3}", "train.steps=4"], ["train.steps=4", "train={steps: 3}"]])
def test_a_section_given_whole_beside_a_key_inside_it_is_refused_in_either_order(overrides: list[str]) -> None:
    (problem,) = refused(overrides)
    assert problem.startswith("train: given whole (train={steps: 3}) and by keys inside it (train.steps=4)")
    assert "keep one" in problem


def test_a_mapping_of_overrides_is_held_to_the_same_rule() -> None:
    (problem,) = refused({"train": {"steps": 3}, "train.lr": 0.2})
    assert problem.startswith("train: given whole (train={'steps': 3}) and by keys inside it (train.lr=0.2)")


def test_sibling_keys_and_tune_space_entries_are_no_conflict() -> None:
    out = apply_overrides(
        {"train": {"steps": 10}},
        ["train.steps=3", "train.lr=0.2", "tune.space.train.lr={uniform: [0.1, 0.2]}", "tune.space.train.steps=[1]"],
    )
    assert out["train"] == {"steps": 3, "lr": 0.2}
    assert set(out["tune"]["space"]) == {"train.lr", "train.steps"}


def test_a_search_space_whose_entries_overlap_is_refused_before_any_trial() -> None:
    """A trial applies its sampled values as overrides: overlapping entries would be refused there, mid-sweep."""
    space = {"augment.strong": {"choice": [{"num_ops": 1}]}, "augment.strong.num_ops": {"randint": [1, 3]}}
    with pytest.raises(ValueError, match=r"'augment.strong' holds 'augment.strong.num_ops'.*keep one"):
        TuneSettings(metric="evaluate/accuracy", space=space)


def test_relay_validate_refuses_a_key_given_twice_with_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    code = main(["run", str(SMOKE), f"run.workspace={workspace}", "train.steps=3", "train.steps=4"])
    assert code == 2
    assert problem_lines(capsys.readouterr().err) == [
        "train.steps: given twice (train.steps=3, then train.steps=4); keep one of them"
    ]
    assert not workspace.exists()


def test_the_python_api_refuses_a_key_given_twice_as_relay_does(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    with pytest.raises(InputError, match=r"train.steps: given twice \(train.steps=3, then train.steps=4\)"):
        api.run(SMOKE, ["run.executor=local", "train.steps=3", "train.steps=4"], workspace=workspace)
    assert not workspace.exists()


def test_a_program_layering_overrides_says_which_wins() -> None:
    """A benchmark's protocol sets crest.generations and each method its own: the method's layer replaces it."""
    protocol, method = ["train.steps=600", "crest.generations=3"], ["crest.generations=1", "crest.alignment=false"]
    composed = layered(protocol, method, ["seed=2"])
    assert composed == ["train.steps=600", "crest.generations=1", "crest.alignment=false", "seed=2"]
    assert apply_overrides({}, composed)["crest"] == {"generations": 1, "alignment": False}
