"""A new sweep Ray Tune stops with an error of its own says so in one line, with where its state is and the way on.

Why: an error out of ``tuner.fit()`` (Ray Tune's controller wraps what it caught in a TuneError holding the
whole traceback) or out of the Tuner's set-up reached the user as some 40 lines of Ray Tune's frames, naming
neither the sweep, nor whether its state was saved, nor what to run next. A plug-in whose build cannot be
pickled for the trials failed that way once the sweep's folder and MLflow run existed; it is bad input now,
refused before anything is written. Ray is not started: the Tuner stands in for Ray Tune's (as in
test_sweep_console), and raises what Ray Tune raises.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.cli.sweeps import sweep_folder
from orchestrator.tune import sweep
from pipelines.registry import PIPELINES
from tests.unit.orchestrator.tune.test_sweep_cluster_and_restart import sweep_file

SMALL = ["train.steps=4", "crest.generations=1", "tune.num_samples=1", "run.num_cpus=2"]
FULL_DISK = "[Errno 28] No space left on device"


class _Session:
    """Stands in for RayExecutor: no Ray started."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _tune_error() -> Exception:
    """What Ray Tune's controller raises when a callback of its loop failed (tune_controller.py, Ray 2.60)."""
    from ray.tune.error import TuneError

    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise TuneError(traceback.format_exc())  # noqa: B904 -- as Ray Tune raises it
    except TuneError as exc:
        return exc


def _failing_fit(monkeypatch: pytest.MonkeyPatch, saves_state: bool) -> None:
    """Ray Tune's fit stops with its TuneError; with ``saves_state`` after it saved the sweep's state."""

    def sized(plan: Any, resume: bool) -> tuple[Any, int]:
        class Tuner:
            def fit(self) -> None:
                if saves_state:
                    plan.experiment_path.mkdir(parents=True, exist_ok=True)
                    (plan.experiment_path / "tuner.pkl").write_bytes(b"")
                    (plan.experiment_path / "experiment_state-2026-12-07_10-00-00.json").write_text("{}")
                raise _tune_error()

        return Tuner(), 1

    monkeypatch.setattr(sweep, "RayExecutor", _Session)
    monkeypatch.setattr(sweep, "_sized_tuner", sized)


def _relay_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("relay:")]


def test_a_tune_error_before_any_saved_state_is_one_line_and_the_same_command_starts_it_again(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config, output = sweep_file(tmp_path, "stopped"), tmp_path / "out"
    _failing_fit(monkeypatch, saves_state=False)

    assert main(["tune", str(config), *SMALL, "--output", str(output)]) == 1
    err = capsys.readouterr().err
    [line] = _relay_lines(err)
    kept = output / "errors" / "sweep.txt"
    assert line.startswith(
        f"relay: sweep stopped failed: Ray Tune stopped it: OSError: {FULL_DISK} (traceback: {kept})"
    )
    assert "saved no state of it, so there is nothing to resume" in line
    assert f"start it again with: RELAY_WORKSPACE={workspace} relay tune " in line
    assert line.endswith(f"relay tune {config} {' '.join(SMALL)} --output {output}")
    assert "Traceback" not in err
    assert "No space left on device" in kept.read_text() and "TuneError" in kept.read_text()
    assert sweep_folder.never_started(output, "stopped")  # the command it names is not refused over its own files


def test_a_tune_error_after_ray_tune_saved_the_sweep_names_its_state_and_resume(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config, output = sweep_file(tmp_path, "stopped"), tmp_path / "out"
    _failing_fit(monkeypatch, saves_state=True)

    assert main(["tune", str(config), *SMALL, "--output", str(output)]) == 1
    err = capsys.readouterr().err
    [line] = _relay_lines(err)
    assert f"its state is saved in {output / 'ray' / 'stopped'}" in line
    assert f"continue it with: RELAY_WORKSPACE={workspace} relay tune " in line
    assert line.endswith(f"relay tune {config} {' '.join(SMALL)} --output {output} --resume")
    assert "Traceback" not in err


def test_an_error_as_ray_tune_sets_the_sweep_up_is_said_the_same_way(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config, output = sweep_file(tmp_path, "stopped"), tmp_path / "out"

    def sized(plan: Any, resume: bool) -> None:
        raise RuntimeError("Unable to set up cluster storage with the following settings")

    monkeypatch.setattr(sweep, "RayExecutor", _Session)
    monkeypatch.setattr(sweep, "_sized_tuner", sized)

    assert main(["tune", str(config), *SMALL, "--output", str(output)]) == 1
    [line] = _relay_lines(capsys.readouterr().err)
    assert "sweep stopped failed: Ray Tune stopped it: RuntimeError: Unable to set up cluster storage" in line
    assert f"start it again with: RELAY_WORKSPACE={workspace} relay tune {config}" in line


def _build_holding(config: Any, client: Any) -> Any:
    return PIPELINES["crest"].build(config)


def test_a_build_that_cannot_be_pickled_for_the_trials_is_refused_before_anything_is_written(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A plug-in's build over a client (a lock here): Ray could not send it to the trials."""
    config, output = sweep_file(tmp_path, "unsendable"), tmp_path / "out"
    _failing_fit(monkeypatch, saves_state=False)  # were it to get that far
    held = dataclasses.replace(PIPELINES["crest"], build=functools.partial(_build_holding, client=threading.Lock()))
    before = sorted(tmp_path.rglob("*"))

    assert main(["tune", str(config), *SMALL, "--output", str(output)], pipelines={**PIPELINES, "crest": held}) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-2:] == [
        "relay: 1 problem(s) in the pipeline's spec:",
        "  - pipeline crest: its build function cannot be sent to Ray Tune's trials (TypeError: cannot pickle "
        "'_thread.lock' object); each trial runs in a Ray worker that receives it pickled: define it at the top "
        "level of an importable module, holding no lock, open file or client (open those inside the stage bodies)",
    ]
    assert "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # no sweep folder, no workspace, no MLflow store


def test_the_refusal_names_the_part_that_cannot_be_pickled(tmp_path: Path) -> None:
    from tests.unit.orchestrator.tune.test_sweep_cluster_and_restart import sweep_plan

    plan = sweep_plan(sweep_file(tmp_path), tmp_path / "out")
    held = dataclasses.replace(plan, build=functools.partial(_build_holding, client=threading.Lock()))
    with pytest.raises(Exception) as refused:
        sweep.check_sendable(held)
    [problem] = refused.value.problems
    assert problem.startswith("pipeline crest: its build function cannot be sent to Ray Tune's trials (TypeError: ")
    assert "_thread.lock" in problem
    sweep.check_sendable(plan)  # Relay's own pipelines are sent as they are


def test_results_that_cannot_be_written_after_the_trials_ended_say_how_to_write_them(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The sweep's folder fails as the sweep writes its tables (here trials.csv is a folder: IsADirectoryError)."""
    from tests.unit.orchestrator.tune.test_sweep_console import _result

    config, output = sweep_file(tmp_path, "stopped"), tmp_path / "out"

    def sized(plan: Any, resume: bool) -> tuple[Any, int]:
        class Tuner:
            def fit(self) -> list:
                (output / "trials.csv").mkdir()
                return [_result(tmp_path / "run_trial_abcde_00000_0", generations=1)]

        return Tuner(), 1

    monkeypatch.setattr(sweep, "RayExecutor", _Session)
    monkeypatch.setattr(sweep, "_sized_tuner", sized)

    assert main(["tune", str(config), *SMALL, "--output", str(output)]) == 1
    err = capsys.readouterr().err
    [line] = _relay_lines(err)
    assert line.startswith(
        f"relay: sweep stopped: its trials ended, but its results could not be written in {output} (IsADirectoryError: "
    )
    assert line.endswith(f"relay tune {config} {' '.join(SMALL)} --output {output} --resume")
    assert "Traceback" not in err
