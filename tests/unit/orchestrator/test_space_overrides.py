"""One entry of a sweep's search space set on the command line: `tune.space.<dotted key>=<domain>`."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import apply_overrides
from orchestrator.errors import ConfigError

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"


def test_an_override_sets_one_space_entry_by_its_dotted_key() -> None:
    """`tune.space.train.lr={...}` said `tune.space.train.lr: unknown key`: the key became a section `train`."""
    space = {"train.lr": {"choice": [0.1]}, "crest.t_min": {"uniform": [0.3, 0.9]}}
    data = apply_overrides({"tune": {"space": space}}, ["tune.space.train.lr={loguniform: [0.01, 0.1]}"])
    assert data["tune"]["space"] == {"train.lr": {"loguniform": [0.01, 0.1]}, "crest.t_min": {"uniform": [0.3, 0.9]}}
    added = apply_overrides({}, {"tune.space.augment.strong.num_ops": {"randint": [1, 3]}})
    assert added == {"tune": {"space": {"augment.strong.num_ops": {"randint": [1, 3]}}}}
    assert apply_overrides({}, ["tune.space={train.lr: {choice: [1]}}"]) == {
        "tune": {"space": {"train.lr": {"choice": [1]}}}
    }
    with pytest.raises(ConfigError, match="empty segment"):
        apply_overrides({}, ["tune.space.=1"])


def test_relay_validate_takes_a_space_entry_from_the_command_line(tmp_path: Path, capsys) -> None:
    workspace = f"run.workspace={tmp_path / 'ws'}"
    assert main(["validate", str(SMOKE), workspace, "tune.space.train.lr={loguniform: [0.01, 0.1]}"]) == 0
    assert "valid `crest` pipeline" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            "tune.space.train.lr.loguniform=[0.01, 0.1]",
            "entry 'train.lr.loguniform' names a domain kind after the key; write the key with its domain: "
            "`train.lr: {loguniform: [0.01, 0.1]}` (on the command line: tune.space.train.lr='{loguniform: [0.01, 0.1]}')",
        ),
        ("tune.space.train.lr=0.1", "entry 'train.lr' must be a domain, one of choice, grid, randint, uniform"),
    ],
)
def test_a_space_entry_that_is_no_domain_says_how_to_write_it(tmp_path: Path, capsys, override: str, says: str) -> None:
    assert main(["validate", str(SMOKE), f"run.workspace={tmp_path / 'ws'}", override]) == 2
    err = capsys.readouterr().err
    assert says in err and f"(set on the command line: {override})" in err
    assert not (tmp_path / "ws").exists()
