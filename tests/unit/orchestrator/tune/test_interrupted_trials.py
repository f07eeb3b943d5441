"""A trial a Ctrl-C cut off after it computed a generation's metric, before Tune got the report.

It read `unfinished` with `-` for the generation in the table and trials.csv, KILLED with
`relay.status` KILLED in MLflow and STOPPED in `relay runs` (its ledger kept the status of the
generation's run, which stops after the metric stage), though its ledger and MLflow held the value.
Real files: the trial's ledger in an artifact store, a sqlite MLflow store, the sweep's trials.csv.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.sweeps.sweep_results import write_sweep_outputs
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger, read_ledger
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, TAG_STATUS, mlflow_client
from orchestrator.tracking.sweeps import SweepTracker
from orchestrator.tune import sweep
from orchestrator.tune.plan import SweepPlan
from orchestrator.tune.trials_table import trial_records, trials_table
from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data

TRIAL = "abcde_00001"
G00 = 0.835


class _Session:
    """Stands in for RayExecutor: no Ray started (Tune's side is the Result below)."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _sweep_plan(tmp_path: Path) -> SweepPlan:
    base = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}), output=tmp_path / "sweep")
    return dataclasses.replace(
        base, store_uri=str(tmp_path / "artifacts"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )


def _ledger_after_generation_0(sweep_plan: SweepPlan, status: str = "STOPPED") -> None:
    """What the trial's run of generation 0 (stop after g00/evaluate) leaves: g00 done, its metric recorded."""
    store = ArtifactStore(sweep_plan.store_uri)
    ledger = Ledger(store, "crest", f"{sweep_plan.name}-{TRIAL}", "code", 0, sweep_plan.report_stages[0], {0: 4, 1: 2})
    done = {"state": "succeeded", "fingerprint": "f", "attempts": 1, "duration_s": 1.0, "error": None, "node": ""}
    ledger.write(
        status,
        {
            "data/split": {**done, "generation": None, "metrics": {}},
            "g00/train": {**done, "generation": 0, "metrics": {"loss": 0.4}},
            "g00/evaluate": {**done, "generation": 0, "metrics": {"balanced_accuracy": G00, "accuracy": G00}},
        },
    )


def _cut_off_result(tmp_path: Path) -> Any:
    """Tune's Result of the trial: no report reached it, so no metrics, no checkpoint, no result lines."""
    from ray import tune

    return tune.Result(
        metrics={}, checkpoint=None, error=None, path=str(tmp_path / f"run_trial_{TRIAL}_1"), metrics_dataframe=None
    )


def _run_sweep_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweep_plan: SweepPlan) -> tuple[list, str]:
    """run_sweep over the cut-off trial with a real SweepTracker; returns the rows and the trial's MLflow run id."""
    tracker = SweepTracker(sweep_plan.tracking_uri, sweep_plan.tracking.experiment, strict=True)
    parent = tracker.start(sweep_plan.name, "smoke", {}, "tune: {}", output=sweep_plan.output)
    client = mlflow_client(sweep_plan.tracking_uri)
    experiment = client.get_experiment_by_name(sweep_plan.tracking.experiment).experiment_id
    tags = {TAG_KIND: "pipeline", TAG_PIPELINE_RUN: f"{sweep_plan.name}-{TRIAL}", "mlflow.parentRunId": parent}
    trial_run = client.create_run(experiment, tags=tags).info.run_id

    class Grid(list):
        pass

    class Tuner:
        def fit(self) -> Grid:
            return Grid([_cut_off_result(tmp_path)])

    monkeypatch.setattr(sweep, "RayExecutor", _Session)
    monkeypatch.setattr(sweep, "_sized_tuner", lambda plan, resume: (Tuner(), 1))
    rows, done = sweep.run_sweep(sweep_plan, False, tracker)
    assert not done  # `relay tune --resume` goes on with it
    return rows, trial_run


def test_a_trial_cut_off_before_its_report_shows_the_metric_it_computed_and_reads_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_plan = _sweep_plan(tmp_path)
    _ledger_after_generation_0(sweep_plan)
    rows, _ = _run_sweep_cut_off(tmp_path, monkeypatch, sweep_plan)
    [row] = rows
    assert row.status == "interrupted" and row.by_generation == {0: G00}

    table = trials_table(rows, [], sweep_plan.generations, None)
    assert table.splitlines()[-1].split() == [TRIAL, "0.835", "-", "interrupted"]
    write_sweep_outputs(Path(sweep_plan.output), trial_records(rows), None, sweep_plan)
    with (Path(sweep_plan.output) / "trials.csv").open() as file:
        [record] = list(csv.DictReader(file))
    assert (record["status"], record["generations"], record["g00"]) == ("interrupted", "1", "0.835")


def test_a_cut_off_trial_is_interrupted_in_mlflow_and_in_its_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli.records.runs import run_rows

    sweep_plan = _sweep_plan(tmp_path)
    _ledger_after_generation_0(sweep_plan)
    _, trial_run = _run_sweep_cut_off(tmp_path, monkeypatch, sweep_plan)

    run = mlflow_client(sweep_plan.tracking_uri).get_run(trial_run)
    assert run.info.status == "KILLED" and run.data.tags[TAG_STATUS] == "INTERRUPTED"
    store = ArtifactStore(sweep_plan.store_uri)
    ledger = read_ledger(store, f"{sweep_plan.name}-{TRIAL}")
    assert ledger["status"] == "INTERRUPTED" and ledger["stages"]["g00/evaluate"]["state"] == "succeeded"
    [listed] = run_rows(store, {}, tmp_path / "sweep")
    assert listed.status == "INTERRUPTED"


def test_a_trial_cut_off_before_it_computed_anything_is_interrupted_in_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ledger, no report: `unfinished` in the table, and `relay.status` INTERRUPTED (it read KILLED)."""
    sweep_plan = _sweep_plan(tmp_path)
    [row], trial_run = _run_sweep_cut_off(tmp_path, monkeypatch, sweep_plan)
    assert row.status == "unfinished" and row.by_generation == {}
    run = mlflow_client(sweep_plan.tracking_uri).get_run(trial_run)
    assert run.info.status == "KILLED" and run.data.tags[TAG_STATUS] == "INTERRUPTED"


def test_a_finished_or_stopped_trials_ledger_is_left_as_it_is(tmp_path: Path) -> None:
    """Only a trial the Ctrl-C cut off is rewritten; a ledger saying FINISHED or FAILED keeps it."""
    sweep_plan = _sweep_plan(tmp_path)
    store = ArtifactStore(sweep_plan.store_uri)
    for status in ("FINISHED", "FAILED", "INTERRUPTED"):
        _ledger_after_generation_0(sweep_plan, status)
        sweep.mark_interrupted(store, f"{sweep_plan.name}-{TRIAL}")
        assert read_ledger(store, f"{sweep_plan.name}-{TRIAL}")["status"] == status
    sweep.mark_interrupted(store, "no-such-run")  # no ledger: nothing written
    assert read_ledger(store, "no-such-run") is None
