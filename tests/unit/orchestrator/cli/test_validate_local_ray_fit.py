"""`relay validate` reports the stages a new local Ray instance could never start, as `relay run` refuses them.

Before, `relay validate smoke.yaml resources.train.num_cpus=3` on a 2-CPU machine said the file was
valid, and the `relay run` of the same config exited 2 ("needs 3 CPUs at once but the local Ray
has 2"). A cluster (``run.ray_address``, RAY_ADDRESS) is not checked: its size is unknown without joining it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

TOO_WIDE = ["run.num_cpus=1", "resources.train.num_cpus=2"]
PROBLEM = "g00/train, g01/train: needs 2 CPUs at once but the local Ray has 1"
FIX = "lower its resources (num_cpus, workers), raise run.num_cpus, or run on a cluster (--address)"


@pytest.fixture(autouse=True)
def no_cluster_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RAY_ADDRESS of the shell would make every run here join a cluster, which is not checked."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("  - ")]


def test_validate_refuses_stages_wider_than_the_local_ray(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), *TOO_WIDE], cwd, capsys)
    assert PROBLEM in err and FIX in err


def test_validate_sizes_the_local_ray_by_this_machine_without_run_num_cpus(cwd: Path, capsys) -> None:
    wider = (os.cpu_count() or 1) + 1
    err = refused(["validate", str(SMOKE), f"resources.train.num_cpus={wider}"], cwd, capsys)
    assert f"needs {wider} CPUs at once but the local Ray has {os.cpu_count()}" in err


def test_validate_says_what_run_says(cwd: Path, capsys) -> None:
    validated = problem_lines(refused(["validate", str(SMOKE), *TOO_WIDE], cwd, capsys))
    ran = problem_lines(refused(["run", str(SMOKE), *TOO_WIDE, f"run.workspace={cwd / 'ws'}"], cwd, capsys))
    assert validated == ran and validated


def test_validate_reports_the_fit_beside_a_tune_problem(cwd: Path, capsys) -> None:
    """Every problem at once: the sweep's own problems do not hide the local Ray's."""
    tune = ["tune.metric=evaluate/balanced_accuracy", "tune.space={train.stepz: {choice: [1, 2]}}"]
    err = refused(["validate", str(SMOKE), *TOO_WIDE, *tune], cwd, capsys)
    assert PROBLEM in err and "train.stepz: unknown key" in err


@pytest.mark.parametrize(
    "overrides",
    [
        ["run.num_cpus=3", "resources.train.num_cpus=2"],  # fits, also beside a trial's driver (smoke.yaml has `tune:`)
        [*TOO_WIDE, "run.ray_address=127.0.0.1:6379"],  # joins a cluster: its size is unknown here
        [*TOO_WIDE, "run.executor=local"],  # no Ray at all
    ],
)
def test_a_config_that_fits_or_starts_no_local_ray_is_valid(cwd: Path, capsys, overrides: list[str]) -> None:
    assert main(["validate", str(SMOKE), *overrides]) == 0
    assert "valid `crest` pipeline" in capsys.readouterr().out
    assert not list(cwd.iterdir())


def test_a_cluster_named_by_ray_address_is_not_checked(cwd: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert main(["validate", str(SMOKE), *TOO_WIDE]) == 0
    assert not list(cwd.iterdir())
