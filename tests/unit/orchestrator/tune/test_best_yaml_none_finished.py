"""A sweep interrupted before any of its trials ended names no best trial.

A Ctrl-C in a sweep's first trial wrote a best.yaml whose header read `# best trial b360d_00000`
and, two lines on, `# sweep interrupted after 0 of 6 trials`: the trial still running was called
the sweep's best on a partial metric, and `relay tune --resume` runs it again. As for a sweep in
which no trial reported the metric, no best.yaml is written; the ending says why and how to go on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from orchestrator.cli.sweeps.sweep_results import interrupted_line, print_ending, write_sweep_outputs
from orchestrator.tune.space import total_trials
from orchestrator.tune.trial_rows import TrialRow
from orchestrator.tune.trials_table import best_row, trial_records
from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data


def args() -> argparse.Namespace:
    return argparse.Namespace(config="qa.yaml", overrides=[], output=None, address=None)


def six_trial_sweep(tmp_path: Path):
    return plan(smoke_data(num_samples=6, space={"train.lr": {"uniform": [0.01, 0.1]}}), output=tmp_path)


def end_of_sweep(tmp_path: Path, rows: list[TrialRow]) -> TrialRow | None:
    """What `relay tune` does with the rows Ray Tune returned after the Ctrl-C: pick the best, write the files."""
    sweep = six_trial_sweep(tmp_path)
    best = best_row(rows, sweep.settings.mode)
    line = interrupted_line(args(), rows, total_trials(sweep.settings))
    write_sweep_outputs(tmp_path, trial_records(rows), best, sweep, (), line)
    return best


def test_a_sweep_cut_off_in_its_first_trial_writes_no_best_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = TrialRow("b360d_00000", "s-b360d_00000", {"train.lr": 0.05}, {0: 0.5}, "interrupted", 0)
    assert end_of_sweep(tmp_path, [first]) is None
    assert not (tmp_path / "best.yaml").exists()
    assert (tmp_path / "trials.csv").exists()  # the cut-off trial is still listed, with its metric
    assert print_ending(args(), six_trial_sweep(tmp_path), done=False, scored=False) == 130
    printed = capsys.readouterr().out
    assert "sweep interrupted before any trial finished with a score, so there is no best.yaml yet" in printed
    assert "continue it with: relay tune qa.yaml --resume" in printed


def test_a_trial_still_open_beside_trials_that_ended_without_a_score_is_no_best(tmp_path: Path) -> None:
    failed = TrialRow("b360d_00000", "s-b360d_00000", {"train.lr": 0.05}, {}, "error", 0)
    open_ = TrialRow("b360d_00001", "s-b360d_00001", {"train.lr": 0.02}, {0: 0.4}, "unfinished", 1)
    assert end_of_sweep(tmp_path, [failed, open_]) is None
    assert not (tmp_path / "best.yaml").exists()


def test_once_a_trial_ended_the_interrupted_sweep_names_its_best_as_before(tmp_path: Path) -> None:
    ended = TrialRow("b360d_00000", "s-b360d_00000", {"train.lr": 0.05}, {0: 0.5, 1: 0.6}, "completed", 0)
    open_ = TrialRow("b360d_00001", "s-b360d_00001", {"train.lr": 0.02}, {0: 0.4}, "interrupted", 1)
    assert end_of_sweep(tmp_path, [ended, open_]) is ended
    header = (tmp_path / "best.yaml").read_text()
    assert "# best trial b360d_00000 of sweep" in header and "interrupted after 1 of 6 trials" in header
