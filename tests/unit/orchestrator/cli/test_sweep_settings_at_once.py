"""`relay validate` and `relay tune` list a sweep check's problem of a `tune:` setting beside the section's field errors.

Why: a field error in `tune:` (`tune.num_samples: 0`) withheld every later problem of the section, so a
`tune.metric` no stage reports was said only after the fix, though the README promises every problem at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_space_problems_at_once import keys_of

NO_SUCH_METRIC = "tune.metric=evaluate/bal"


@pytest.mark.parametrize("command", ["validate", "tune"])
@pytest.mark.parametrize("field_error", ["tune.num_samples=0", "tune.mode=maximize", "tune.foo=1"])
def test_a_metric_no_stage_reports_is_listed_beside_a_field_error_of_tune(
    cwd: Path, capsys, command: str, field_error: str
) -> None:
    err = refused([command, str(SMOKE), field_error, NO_SUCH_METRIC], cwd, capsys)
    assert keys_of(err) == sorted([field_error.split("=")[0], "tune.metric"]), err
    assert "tune.metric: stage g00/evaluate reports balanced_accuracy" in err and "not 'bal'" in err


def test_a_grace_period_past_the_generations_is_listed_beside_a_field_error_of_tune(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "tune.num_samples=0", "tune.grace_period=5"], cwd, capsys)
    assert keys_of(err) == ["tune.grace_period", "tune.num_samples"], err


def test_a_grace_period_is_not_judged_under_a_scheduler_standing_in_for_an_invalid_one(cwd: Path, capsys) -> None:
    """With `tune.scheduler` invalid, the default (asha) stood in for it: the user's scheduler may not read grace."""
    err = refused(["validate", str(SMOKE), "tune.scheduler=bogus", "tune.grace_period=5"], cwd, capsys)
    assert keys_of(err) == ["tune.scheduler"], err
