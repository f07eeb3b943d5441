"""`relay validate` of a sweep file says that a trial-size problem is the sweep's, not `relay run`'s.

Before, `relay validate smoke.yaml resources.train.workers=2` exited 2 with `resources.train: a trial needs 2.1
CPUs at once ...` and nothing more, while `relay run smoke.yaml resources.train.workers=2` accepted and ran the same
file: a trial's 0.1-CPU driver sits beside its stages only in `relay tune`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

FOR_THE_SWEEP = "this is for `relay tune` (each trial of the sweep)"
NOT_RUN = "runs the base config once and is not affected"


@pytest.fixture(autouse=True)
def no_cluster_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RAY_ADDRESS of the shell would make the sweep join a cluster, whose nodes validate does not check."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.parametrize(
    "override",
    ["resources.train.workers=2", "tune.trial_cpus=2", "tune.space.resources.train.num_cpus={choice: [1, 3]}"],
)
def test_a_trial_size_problem_says_it_is_the_sweeps_and_not_relay_runs(override: str, cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "train.steps=20", override], cwd, capsys)
    line = next(line for line in err.splitlines() if "a trial" in line)
    # the `relay run` named keeps the overrides that are not the sweep's: pasted, it runs this config
    run = f"`relay run {SMOKE} train.steps=20{'' if override.startswith('tune.') else ' ' + override}`"
    assert f"(set on the command line: {override}); {FOR_THE_SWEEP}: {run} {NOT_RUN}" in line
    assert line.endswith("(to validate that alone, leave out the tune section: tune=null)")


def test_the_line_keeps_the_heading_relay_tune_prints(cwd: Path, capsys) -> None:
    """The key heads the line, so the override that set it is still named (``from_override``)."""
    err = refused(["validate", str(SMOKE), "resources.train.workers=2"], cwd, capsys)
    assert "  - resources.train: a trial needs 2.1 CPUs at once (0.1 for its driver beside g00/train's 2)" in err


def test_relay_tune_says_it_without_the_note(cwd: Path, capsys) -> None:
    err = refused(["tune", str(SMOKE), "resources.train.workers=2"], cwd, capsys)
    assert "resources.train: a trial needs 2.1 CPUs at once" in err
    assert FOR_THE_SWEEP not in err


def test_without_the_tune_section_the_same_config_is_valid(cwd: Path, capsys) -> None:
    """What the note says to do: the base config alone, as `relay run` runs it, fits the 2-CPU local Ray."""
    assert main(["validate", str(SMOKE), "train.steps=20", "resources.train.workers=2", "tune=null"]) == 0
    assert "valid `crest` pipeline" in capsys.readouterr().out
