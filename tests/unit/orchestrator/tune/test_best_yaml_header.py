"""best.yaml's header and the line that runs it say what the sweep was: cut off, or run on a cluster.

- An interrupted sweep (Ctrl-C after one of two trials) wrote best.yaml naming its best trial, as
  a finished sweep's, and nothing said the sweep was unfinished or how to continue it.
- A sweep run with `--address` printed `relay run .../best.yaml` without it, which started a
  local Ray instance on the machine it was pasted on.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.run.run_locations import RAY_JOB_ENV
from orchestrator.cli.sweeps.sweep_folder import (
    SUBMITTED_RESUME_ENV,
    SUBMITTED_START_ENV,
    check_resume,
    save_sweep_stores,
)
from orchestrator.cli.sweeps.sweep_results import (
    failed_way_on,
    interrupted_before_trials,
    interrupted_line,
    print_ending,
    run_best_command,
    write_sweep_outputs,
)
from orchestrator.engine.ledger import JOB_ADDRESS_ENV
from orchestrator.errors import ConfigError
from orchestrator.tune.space import total_trials
from orchestrator.tune.trial_rows import TrialRow
from orchestrator.tune.trials_table import trial_records
from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data

CLUSTER = "10.0.0.5:6379"


def args(address: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config="qa.yaml", overrides=[], output=None, address=address)


def two_trial_sweep(tmp_path: Path):
    sweep = plan(smoke_data(num_samples=2, space={"train.lr": {"uniform": [0.01, 0.1]}}), output=tmp_path)
    assert total_trials(sweep.settings) == 2
    rows = [
        TrialRow("a", "s-a", {"train.lr": 0.05}, {0: 0.5, 1: 0.6}, "completed", 0),
        TrialRow("b", "s-b", {"train.lr": 0.02}, {0: 0.4}, "interrupted", 1),
    ]
    return sweep, rows


def header(tmp_path: Path) -> list[str]:
    return [line for line in (tmp_path / "best.yaml").read_text().splitlines() if line.startswith("#")]


def test_an_interrupted_sweeps_best_yaml_says_so_and_how_to_continue(tmp_path: Path) -> None:
    sweep, rows = two_trial_sweep(tmp_path)
    line = interrupted_line(args(), rows, total_trials(sweep.settings))
    write_sweep_outputs(tmp_path, trial_records(rows), rows[0], sweep, (), line)
    lines = header(tmp_path)
    assert "# sweep interrupted after 1 of 2 trials; continue it with: relay tune qa.yaml --resume" in lines
    assert any("best trial a of sweep" in h for h in lines)
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["train"]["lr"] == 0.05


def test_a_finished_sweeps_best_yaml_says_nothing_of_an_interruption(tmp_path: Path) -> None:
    sweep, rows = two_trial_sweep(tmp_path)
    write_sweep_outputs(tmp_path, trial_records(rows[:1]), rows[0], sweep)
    assert not any("interrupted" in h for h in header(tmp_path))


def test_the_resume_line_printed_is_the_one_in_best_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep, rows = two_trial_sweep(tmp_path)
    print_ending(args(CLUSTER), sweep, done=False, scored=True)
    printed = capsys.readouterr().out
    line = interrupted_line(args(CLUSTER), rows, 2)
    assert line.partition("continue it with: ")[2] in printed and f"--address {CLUSTER} --resume" in printed


def test_a_cluster_sweeps_run_line_names_its_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep, rows = two_trial_sweep(tmp_path)
    save_sweep_stores(tmp_path, sweep, CLUSTER)  # what the sweep recorded of the cluster it joined
    write_sweep_outputs(tmp_path, trial_records(rows[:1]), rows[0], sweep)
    command = header(tmp_path)[0].removeprefix("# ")
    assert shlex.split(command)[-4:] == ["run", str(tmp_path / "best.yaml"), "--address", CLUSTER]
    assert print_ending(args(CLUSTER), sweep, done=True, scored=True) == 0
    assert f"best.yaml --address {CLUSTER})" in capsys.readouterr().out


def test_a_local_sweeps_run_line_names_no_address(tmp_path: Path) -> None:
    sweep, _ = two_trial_sweep(tmp_path)
    save_sweep_stores(tmp_path, sweep)
    assert "ray_address" not in json.loads((tmp_path / "sweep-stores.json").read_text())
    assert "--address" not in run_best_command(tmp_path / "best.yaml", sweep)


DASHBOARD = "http://10.0.0.5:8265"
SUBMITTED_RESUME = f"relay submit qa.yaml --tune --resume-sweep --address {DASHBOARD}"
SUBMITTED_START = f"relay submit qa.yaml --tune --address {DASHBOARD}"


@pytest.fixture
def in_a_sweep_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as the entrypoint of the job `relay submit qa.yaml --tune` sent to DASHBOARD."""
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    monkeypatch.setenv(JOB_ADDRESS_ENV, DASHBOARD)
    monkeypatch.setenv(SUBMITTED_RESUME_ENV, SUBMITTED_RESUME)


def test_a_sweep_jobs_lines_name_a_job_to_the_cluster_it_was_sent_to(tmp_path: Path, in_a_sweep_job: None) -> None:
    """Inside a sweep's job, `relay tune --resume` or `relay run best.yaml` pasted on the user's machine would drive
    the rest of the sweep, or the best config, from there: the lines name jobs on the cluster instead."""
    sweep, rows = two_trial_sweep(tmp_path)
    line = interrupted_line(args(), rows, total_trials(sweep.settings))
    assert line.endswith(f"continue it with: {SUBMITTED_RESUME}")
    command = shlex.split(run_best_command(tmp_path / "best.yaml", sweep))
    assert command == ["relay", "submit", str(tmp_path / "best.yaml"), "--address", DASHBOARD]


def test_a_sweep_jobs_start_again_lines_name_the_submit_not_the_jobs_copy(
    tmp_path: Path, in_a_sweep_job: None, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A sweep's job reads a copy of the user's file in a temporary folder on the cluster; its "start it again"
    lines named `relay tune /tmp/relay-config.XXXXXX/qa.yaml`, a path and a machine the user never saw."""
    monkeypatch.setenv(SUBMITTED_START_ENV, SUBMITTED_START)
    sweep, _ = two_trial_sweep(tmp_path)
    copy = argparse.Namespace(config="/tmp/relay-config.abc123/qa.yaml", overrides=[], output=None, address=None)
    assert failed_way_on(copy, sweep, resumable=False).endswith(f"start it again with: {SUBMITTED_START}")
    assert failed_way_on(copy, sweep, resumable=True).endswith(f"continue it with: {SUBMITTED_RESUME}")
    interrupted_before_trials(argparse.Namespace(**vars(copy), resume=False), sweep, resumable=False)
    assert capsys.readouterr().out.strip().endswith(f"start it again with: {SUBMITTED_START}")


def test_outside_a_job_the_submitted_resume_line_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    monkeypatch.setenv(SUBMITTED_RESUME_ENV, SUBMITTED_RESUME)  # left in a shell: not this sweep's way on
    monkeypatch.setenv(SUBMITTED_START_ENV, SUBMITTED_START)
    monkeypatch.setenv(JOB_ADDRESS_ENV, DASHBOARD)
    sweep, rows = two_trial_sweep(tmp_path)
    assert interrupted_line(args(), rows, 2).endswith("continue it with: relay tune qa.yaml --resume")
    assert failed_way_on(args(), sweep, resumable=False).endswith("start it again with: relay tune qa.yaml")
    assert shlex.split(run_best_command(tmp_path / "best.yaml", sweep))[:2] == ["relay", "run"]


def test_a_sweep_jobs_refusals_name_the_submits_flag(tmp_path: Path, in_a_sweep_job: None) -> None:
    """In a sweep's job, `relay tune`'s "start it without --resume" named a flag `relay submit` has for run ids."""
    sweep, _ = two_trial_sweep(tmp_path)
    resumed = argparse.Namespace(config="qa.yaml", overrides=[], output=str(tmp_path), resume=True)
    with pytest.raises(ConfigError, match="start it without --resume-sweep"):
        check_resume(resumed, sweep, exists=False)
    with pytest.raises(ConfigError, match="continue it with --resume-sweep"):
        check_resume(argparse.Namespace(**{**vars(resumed), "resume": False}), sweep, exists=True)
