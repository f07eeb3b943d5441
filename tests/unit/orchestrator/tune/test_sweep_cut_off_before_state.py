"""A sweep cut off after its Tuner was built and before Ray Tune saved any state counts as never started.

Why: ``tune.Tuner(...)`` writes ray/NAME/tuner.pkl as soon as it is built, and ``Tuner.can_restore``
looks for nothing else. A start cut off then (a Ctrl-C as Ray started, a kill) left a folder that
`relay tune --resume` took for a sweep and ended in Ray Tune's traceback (KeyError: 'train.lr'), while
the same command without --resume was refused as one over an existing sweep. The folders here hold a
real tuner.pkl, written by the sweep's own ``make_tuner``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.sweeps import sweep_folder
from orchestrator.cli.sweeps import tune as cli_tune
from orchestrator.errors import RelayError
from orchestrator.tune import sweep
from orchestrator.tune.plan import SweepPlan
from tests.unit.orchestrator.tune.test_sweep_cluster_and_restart import (
    left_by_a_failed_start,
    sweep_file,
    sweep_plan,
)


def cut_off_after_the_tuner(config: Path, output: Path, files_of_the_start: bool = True) -> SweepPlan:
    """What a start cut off right after its Tuner was built leaves: ray/NAME/tuner.pkl and no saved state.

    ``files_of_the_start``: a kill also leaves sweep-config.yaml and sweep-stores.json; a Ctrl-C
    deletes them (``sweep_results.interrupted_before_trials``).
    """
    if files_of_the_start:
        left_by_a_failed_start(config, output)
    plan = sweep_plan(config, output)
    sweep.make_tuner(plan, 1, resume=False)
    assert (plan.experiment_path / "tuner.pkl").is_file()
    return plan


def tree(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("*"))}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path / "ws"


@pytest.mark.parametrize("files_of_the_start", [True, False], ids=["killed", "ctrl-c"])
def test_its_resume_is_refused_saying_it_never_got_to_a_trial_and_writes_nothing(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture, files_of_the_start: bool
) -> None:
    config = sweep_file(tmp_path)
    plan = cut_off_after_the_tuner(config, workspace / "tune" / "restartable", files_of_the_start)
    assert not sweep.can_resume(plan)
    before = tree(tmp_path)

    assert main(["tune", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "never got to a trial); start it without --resume" in err, err
    assert "Traceback" not in err
    assert tree(tmp_path) == before, "a refused --resume wrote nothing"


def stopping_at_the_start(started: list[str]) -> type:
    """The sweep's tracker, stopping the command where the sweep itself would start (past every folder check)."""

    class StopAtStart:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def start(self, name: str, *args, **kwargs) -> None:
            started.append(name)
            raise cli_tune.ConfigError(["stopped by the test as the sweep starts"], "test")

    return StopAtStart


@pytest.mark.parametrize("files_of_the_start", [True, False], ids=["killed", "ctrl-c"])
def test_the_same_command_without_resume_starts_it_again(
    tmp_path: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    files_of_the_start: bool,
) -> None:
    config = sweep_file(tmp_path)
    cut_off_after_the_tuner(config, workspace / "tune" / "restartable", files_of_the_start)
    started: list[str] = []
    monkeypatch.setattr(cli_tune, "SweepTracker", stopping_at_the_start(started))

    assert main(["tune", str(config)]) == 2
    err = capsys.readouterr().err
    assert started == ["restartable"], err
    assert "already exists" not in err and "not a sweep's" not in err


def test_saved_state_or_another_sweeps_folder_is_still_a_sweep(tmp_path: Path, workspace: Path) -> None:
    """Only this sweep's ray/NAME without saved state counts as never started: one with Ray Tune's state is a
    sweep to resume, and another sweep's folder (started or not) is that sweep's, which a new start must not join."""
    output = tmp_path / "out"
    plan = cut_off_after_the_tuner(sweep_file(tmp_path), output)
    assert sweep_folder.never_started(output, "restartable")
    assert not sweep_folder.never_started(output, "other")
    (plan.experiment_path / "experiment_state-2026-12-07_04-00-00.json").write_text("{}")
    assert sweep.can_resume(plan)
    assert not sweep_folder.never_started(output, "restartable")


def test_the_state_the_folder_checks_look_for_is_ray_tunes() -> None:
    from ray.tune.execution.tune_controller import TuneController

    assert TuneController.CKPT_FILE_TMPL.format("*") == sweep_folder.EXPERIMENT_STATE


def test_a_resume_ray_tune_cannot_carry_out_is_one_line_naming_the_sweep_and_the_ways_on(tmp_path: Path) -> None:
    plan = sweep_plan(sweep_file(tmp_path), tmp_path / "out")
    with pytest.raises(RelayError) as info, sweep.resume_failure_said(plan, resume=True):
        raise KeyError("train.lr")
    said = str(info.value)
    assert f"sweep restartable: Ray Tune could not go on from the sweep's saved state at {plan.experiment_path}" in said
    assert "KeyError: 'train.lr'" in said and "relay -v" in said and "tune.name" in said and "--output" in said
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(KeyError), sweep.resume_failure_said(plan, resume=False):  # a new sweep's errors pass
        raise KeyError("train.lr")


def test_the_error_behind_ray_tunes_failed_restore_is_the_one_named(tmp_path: Path) -> None:
    """Ray Tune logs why it could not read the state (with its traceback), restarts the sweep from tuner.pkl and
    fails there; the message names the first error, and the console keeps Ray Tune's line without its traceback."""
    plan = sweep_plan(sweep_file(tmp_path), tmp_path / "out")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    ray_logger = logging.getLogger(sweep.CONTROLLER_LOGGER)
    ray_logger.addHandler(handler)
    try:
        with pytest.raises(RelayError) as info, sweep.resume_failure_said(plan, resume=True):
            try:
                json.loads('{"trial_data": [')
            except ValueError:
                ray_logger.exception(sweep.RESTORE_FAILED)
            raise KeyError("train.lr")
    finally:
        ray_logger.removeHandler(handler)
    assert "saved state at" in str(info.value) and "JSONDecodeError: Expecting value" in str(info.value)
    [record] = records
    assert record.getMessage() == sweep.RESTORE_FAILED and record.exc_info is None
