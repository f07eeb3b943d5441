"""What a sweep says on the console about the ways on: Relay's --resume only, and error files that last."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestrator.tune import sweep
from orchestrator.tune.plan import SweepPlan
from tests.unit.orchestrator.tune.test_tune_config import METRIC, plan, smoke_data

# Ray Tune's lines around a Ctrl-C, as its module ray.tune.tune logs them (Ray 2.60)
RESTORE_ADVICE = (
    "Experiment has been interrupted, but the most recent state was saved.\n"
    'Resume experiment with: Tuner.restore(path="/tmp/x/ray/x", trainable=...)'
)
STOP_SIGNAL = "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run."
NOT_COMPLETE = "Trials did not complete: [run_trial_abcde_00000]"


class _Session:
    """Stands in for RayExecutor: no Ray started."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass


class _Sweeps:
    def close_trial(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Lines(logging.Handler):
    """The records that reach a handler of Ray Tune's logger, i.e. the console."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _result(path: Path, error: Exception | None = None, generations: int = 2) -> Any:
    from ray import tune

    trial_id = path.name.split("_", 2)[2][:11]
    frame = pd.DataFrame({"generation": list(range(generations)), METRIC: [0.5] * generations})
    return tune.Result(
        metrics={"trial_id": trial_id, "done": True},
        checkpoint=None,
        error=error,
        path=str(path),
        metrics_dataframe=frame,
    )


def _run(monkeypatch: pytest.MonkeyPatch, sweep_plan: SweepPlan, fit: Any) -> list:
    class Tuner:
        def fit(self) -> list:
            return fit()

    monkeypatch.setattr(sweep, "RayExecutor", _Session)
    monkeypatch.setattr(sweep, "_sized_tuner", lambda plan, resume: (Tuner(), 1))
    rows, _ = sweep.run_sweep(sweep_plan, False, _Sweeps())
    return rows


def _sweep_plan(tmp_path: Path) -> SweepPlan:
    base = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}), output=tmp_path / "sweep")
    return dataclasses.replace(base, store_uri=str(tmp_path / "artifacts"))


def test_ray_tunes_tuner_restore_advice_stays_off_the_console_and_its_errors_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a Ctrl-C Ray Tune advised `Tuner.restore(...)` just before Relay's `relay tune ... --resume`."""
    ray_tune = logging.getLogger("ray.tune.tune")  # Ray Tune's run-loop logger
    console = _Lines()
    ray_tune.addHandler(console)
    sweep_plan = _sweep_plan(tmp_path)

    def fit() -> list:
        ray_tune.warning(STOP_SIGNAL)
        ray_tune.error(NOT_COMPLETE)
        ray_tune.warning(RESTORE_ADVICE)
        return [_result(tmp_path / "run_trial_abcde_00000_0")]

    try:
        _run(monkeypatch, sweep_plan, fit)
        assert console.lines == [STOP_SIGNAL, NOT_COMPLETE]
        ray_tune.warning(RESTORE_ADVICE)  # outside a sweep's fit Ray Tune's logger is left as it was
        assert console.lines[-1] == RESTORE_ADVICE
    finally:
        ray_tune.removeHandler(console)


def test_a_failed_trials_error_file_is_named_in_the_sweeps_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ray Tune names /tmp/ray/session_*/artifacts/.../error.txt; the copy that lasts is under the sweep's ray/."""
    sweep_plan = _sweep_plan(tmp_path)
    storage = tmp_path / "storage"  # Ray Tune's Result.path: the trial's folder in the sweep's storage
    failed = storage / "run_trial_abcde_00000_0_train.lr=0.1"
    retried = storage / "run_trial_abcde_00001_1_train.lr=0.01"
    clean = storage / "run_trial_abcde_00002_2_train.lr=0.1"
    for folder in (failed, retried):
        kept = sweep_plan.experiment_path / folder.name / "error.txt"
        kept.parent.mkdir(parents=True)
        kept.write_text("Traceback ...\n")
    (sweep_plan.experiment_path / clean.name).mkdir()

    results = [_result(failed, RuntimeError("worker died"), 1), _result(retried), _result(clean)]
    with caplog.at_level(logging.WARNING, logger=sweep.__name__):
        rows = _run(monkeypatch, sweep_plan, lambda: results)
    assert [row.status for row in rows] == ["error", "completed", "completed"]
    said = [record.getMessage() for record in caplog.records if record.name == sweep.__name__]
    assert said == [
        f"trial abcde_00000 failed (RuntimeError: worker died); its error is in "
        f"{sweep_plan.experiment_path / failed.name / 'error.txt'}",
        f"trial abcde_00001 failed at least once (retried); its error is in "
        f"{sweep_plan.experiment_path / retried.name / 'error.txt'}",
    ]
    assert all("/tmp/ray" not in line for line in said)
