"""`relay validate` and `relay tune` list a sweep's space problems beside the file's other problems.

The space's keys and values were checked only once the rest of the file was valid, so a range written high to
low, or `train.lr: -1`, hid a misspelled space key, and the user met it after the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in

BAD_RANGE = "tune.space.crest.t_min={uniform: [0.9, 0.3]}"
NO_SUCH_KEY = "tune.space.train.stepz={randint: [1,3]}"


def keys_of(err: str) -> list[str]:
    return sorted(problem.removeprefix("  - ").split(":", 1)[0] for problem in problems_in(err))


def test_a_range_high_to_low_and_a_space_key_no_config_has_are_listed_together(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), BAD_RANGE, NO_SUCH_KEY], cwd, capsys)
    assert keys_of(err) == ["tune.space.crest.t_min", "tune.space.train.stepz"], err
    assert "tune.space.train.stepz: unknown key (did you mean 'steps'?)" in err


@pytest.mark.parametrize("command", ["validate", "tune"])
@pytest.mark.parametrize("field_error", ["train.lr=-1", "tune.num_samples=0"])
def test_a_field_error_does_not_hide_the_space_problems(cwd: Path, capsys, command: str, field_error: str) -> None:
    err = refused([command, str(SMOKE), field_error, NO_SUCH_KEY], cwd, capsys)
    assert keys_of(err) == sorted([field_error.split("=")[0], "tune.space.train.stepz"]), err


def test_idle_workers_do_not_hide_the_space_problems(cwd: Path, capsys) -> None:
    """The pipeline does not build with idle workers: the space's values are still checked against the config."""
    err = refused(["validate", str(SMOKE), "resources.evaluate.workers=2", NO_SUCH_KEY], cwd, capsys)
    assert keys_of(err) == ["resources.evaluate.workers", "tune.space.train.stepz"], err
