"""A sweep's `resources.*` values are checked as the same value in the config is: one that can never fit exits 2.

Before, `relay tune qa.yaml 'tune.space.resources.train.num_cpus={choice: [3]}'` on a 2-CPU local Ray
started the sweep, and its trial waited forever for 3 CPUs, while `resources.train.num_cpus=3` was
refused; on a cluster of 1-CPU nodes a sampled 2 pended the same way. And `relay validate` said
`valid` for a config `relay tune` refused for the size of its trials (`tune.trial_cpus=2`,
`resources.train.workers=2` on 2 CPUs), the latter blamed on tune.trial_cpus without naming the override.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.run import cluster_fit
from orchestrator.config import load_yaml, validate_config
from orchestrator.engine.fit import local_gpus
from pipelines.builders import crest
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

THREE_CPUS = "tune.space.resources.train.num_cpus={choice: [1, 3]}"
THREE_CPUS_PROBLEM = (
    "tune.space.resources.train.num_cpus: a trial given resources.train.num_cpus=3 (from choice [1, 3]) could never "
    "start, as the same value set in the config could not: g00/train, g01/train: needs 3 CPUs at once but the local "
    "Ray has 2; drop 3 from the choice"
)
ONE_CPU_WORKERS = [{"CPU": 0.0, "memory": 1e9}, {"CPU": 1.0, "memory": 1e9}, {"CPU": 1.0, "memory": 1e9}]


@pytest.fixture(autouse=True)
def no_cluster_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RAY_ADDRESS of the shell would make the sweep join a cluster, whose nodes these tests do not start."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.timeout(90)  # the sweep it refuses never ended: a hang is this test failing
def test_tune_refuses_a_choice_of_cpus_no_local_trial_can_get(cwd: Path, capsys) -> None:
    err = refused(["tune", str(SMOKE), THREE_CPUS], cwd, capsys)
    assert THREE_CPUS_PROBLEM in err
    assert f"(set on the command line: {THREE_CPUS})" in err


def test_validate_refuses_what_tune_refuses_for_a_value_of_the_space(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), THREE_CPUS], cwd, capsys)
    assert THREE_CPUS_PROBLEM in err


def test_a_range_is_checked_from_its_upper_bound_down_to_the_largest_value_that_fits(cwd: Path, capsys) -> None:
    """workers=3 asks for 3 CPUs at once (Ray Train starts all its workers) on 2, and workers=2 leaves no room for
    the trial's driver: the line named 3 only, and a user who lowered the bound to 2 was refused again."""
    err = refused(["validate", str(SMOKE), "tune.space.resources.train.workers={randint: [1, 3]}"], cwd, capsys)
    assert (
        "tune.space.resources.train.workers: a trial given resources.train.workers from 2 to 3 (of randint [1, 3]) "
        "could never start, as the same value set in the config could not: at 3, g00/train, g01/train: needs 3 CPUs "
        "at once but the local Ray has 2; lower the randint's upper bound to 1, the largest that fits" in err
    )


def test_a_range_no_value_of_which_fits_says_so(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "tune.space.resources.train.workers={randint: [2, 3]}"], cwd, capsys)
    assert "resources.train.workers from 2 to 3 (of randint [2, 3]) could never start" in err
    assert "no value of randint [2, 3] fits: set resources.train.workers to a smaller range or value" in err


def test_the_largest_bound_named_fits_even_where_the_base_config_does_not(cwd: Path, capsys) -> None:
    """The base config's own workers=2 is too wide for a trial (its problem is said on its own line); the range's
    fix named 2 as "the largest that fits" because the walk skipped the base config's problems."""
    argv = ["validate", str(SMOKE), "resources.train.workers=2", "tune.space.resources.train.workers={randint: [1, 3]}"]
    err = refused(argv, cwd, capsys)
    assert "resources.train: a trial needs 2.1 CPUs at once" in err
    assert "resources.train.workers from 2 to 3 (of randint [1, 3])" in err
    assert "lower the randint's upper bound to 1, the largest that fits" in err


def test_a_wide_range_is_one_short_line(cwd: Path, capsys) -> None:
    """{randint: [1, 4096]} listed 4,095 values in one line after as many builds; it is a range, found by bisection."""
    err = refused(["validate", str(SMOKE), "tune.space.resources.train.workers={randint: [1, 4096]}"], cwd, capsys)
    assert "resources.train.workers from 2 to 4096 (of randint [1, 4096])" in err
    assert "4095" not in err and "lower the randint's upper bound to 1, the largest that fits" in err


def test_a_value_that_leaves_no_room_for_the_trials_driver_is_refused(cwd: Path, capsys) -> None:
    """2 CPUs fit a 2-CPU local Ray for `relay run`, not beside a trial's 0.1-CPU driver."""
    err = refused(["validate", str(SMOKE), "tune.space.resources.train.num_cpus={grid: [1, 2]}"], cwd, capsys)
    assert (
        "resources.train.num_cpus=2 (from grid [1, 2]) could never start, as the same value set in the config could "
        "not: a trial needs 2.1 CPUs at once (0.1 for its driver beside g00/train's 2) but the local Ray has 2; drop 2 "
        "from the grid" in err
    )


@pytest.mark.skipif(local_gpus() != 0, reason="needs a machine Relay knows has no GPU")
def test_a_gpu_value_on_a_machine_without_one_is_refused(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "tune.space.resources.train.num_gpus={choice: [0, 1]}"], cwd, capsys)
    assert (
        "tune.space.resources.train.num_gpus: a trial given resources.train.num_gpus=1 (from choice [0, 1]) could "
        "never start" in err
    )
    assert "needs 1 GPUs at once but this machine has 0; drop 1 from the choice" in err


def test_values_that_fit_pass(cwd: Path, capsys) -> None:
    assert main(["validate", str(SMOKE), "tune.space.resources.train.num_cpus={choice: [0.5, 1]}"]) == 0
    assert "valid `crest` pipeline" in capsys.readouterr().out


def test_a_value_no_cluster_node_can_hold_is_named_with_the_largest_node() -> None:
    """The cluster's check (``cluster_fit.oversized_worker_problems``) on each value: a head of 0 CPUs and two
    1-CPU workers hold no 2-CPU worker, so a sampled 2 would pend forever."""
    from orchestrator.tune.trial_fit import space_fit_problems  # here: the module's other tests run without it

    data = load_yaml(SMOKE)
    data["tune"]["space"] = {"resources.train.num_cpus": {"choice": [1, 2]}}
    config = validate_config(crest.CrestConfig, data)
    base = {key: value for key, value in data.items() if key != "tune"}
    problems = space_fit_problems(
        base,
        config.tune.space,
        type(config),
        crest.build,
        lambda pipeline: cluster_fit.oversized_worker_problems(ONE_CPU_WORKERS, pipeline),
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "tune.space.resources.train.num_cpus: a trial given resources.train.num_cpus=2 (from choice [1, 2]) could "
        "never start, as the same value set in the config could not: g00/train, g01/train: one worker asks for 2 CPU, "
        "and no node of the cluster has that much (the largest has 1 CPU); drop 2 from the choice"
    )


def test_validate_refuses_a_trial_cpus_tune_refuses_and_names_its_override(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "tune.trial_cpus=2"], cwd, capsys)
    assert "tune.trial_cpus: a trial needs 3 CPUs at once" in err
    assert "(set on the command line: tune.trial_cpus=2)" in err


@pytest.mark.parametrize("command", ["validate", "tune"])
def test_a_stage_as_wide_as_the_machine_is_blamed_on_its_resources_and_its_override(
    command: str, cwd: Path, capsys
) -> None:
    err = refused([command, str(SMOKE), "resources.train.workers=2"], cwd, capsys)
    assert "resources.train: a trial needs 2.1 CPUs at once (0.1 for its driver beside g00/train's 2)" in err
    assert "lower tune.trial_cpus or resources.train (num_cpus, workers), or raise run.num_cpus" in err
    assert "(set on the command line: resources.train.workers=2)" in err
