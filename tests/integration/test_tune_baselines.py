"""`relay tune` on a pipeline with a comparison baseline (KE's compute-matched one), through the real CLI.

A real sweep (Ray Tune, local Ray, MLflow in SQLite, the Parquet store) of tiny KE trials written with
`--output`. Before: each trial ran up to its last generation's metric stage, so the baseline never ran
and nothing said so; its ledger read STOPPED, `relay runs` showed it STOPPED under the config's name
with no best metric, and `relay generations` called it unfinished. Rerunning the sweep offered
`set tune.name`, which the `--output` folder then refused as one of "files that are not a sweep's".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.relay_cli import relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
KE = ROOT / "pipelines" / "configs" / "ke_digits.yaml"
SWEEP = "ke-it"


def overrides(name: str = SWEEP) -> list[str]:
    return [
        "ke.generations=2",
        "train.steps=3",
        "train.warmup_steps=1",
        "train.report_every=3",
        "tracking.log_models=false",
        "tracking.system_metrics=false",
        f"tune={{name: {name}, metric: evaluate/balanced_accuracy, num_samples: 1, scheduler: none, "
        "space: {ke.split_rate: {uniform: [0.3, 0.8]}}}",
    ]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ke-sweep")
    workspace, output = root / "ws", root / "out"
    done = relay("tune", str(KE), *overrides(), "--output", str(output), workspace=workspace, timeout_s=900)
    return {"done": done, "workspace": workspace, "output": output, "log": done.stdout + done.stderr}


def trial_run_id(sweep: dict) -> str:
    [record] = json.loads((sweep["output"] / "trials.json").read_text())
    return record["run_id"]


def test_the_sweep_says_once_that_trials_leave_the_baseline_out(sweep) -> None:
    assert sweep["done"].returncode == 0, sweep["log"][-4000:]
    assert sweep["log"].count("trials do not run baseline/train, baseline/evaluate") == 1


def test_a_trial_that_ran_every_generation_reads_finished_everywhere(sweep) -> None:
    run_id = trial_run_id(sweep)
    ledger = json.loads((sweep["workspace"] / "artifacts" / "runs" / run_id / "ledger.json").read_text())
    assert ledger["status"] == "FINISHED"
    assert "baseline/train" not in ledger["stages"]
    [record] = json.loads((sweep["output"] / "trials.json").read_text())
    assert record["status"] == "completed"
    client = MlflowClient(f"sqlite:///{sweep['workspace'] / 'mlflow.db'}")
    [trial] = client.search_runs(
        [client.get_experiment_by_name("relay").experiment_id], f"tags.mlflow.runName = '{run_id}'"
    )
    assert trial.info.status == "FINISHED" and trial.data.tags["relay.status"] == "FINISHED"


def test_relay_runs_lists_the_trial_of_an_output_sweep_with_its_pipeline_and_best(sweep) -> None:
    run_id = trial_run_id(sweep)
    listed = relay("runs", workspace=sweep["workspace"])
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    cells = line.split()
    assert cells[1:4] == ["ke", "FINISHED", "2/2"], line
    assert cells[4] == "balanced_accuracy", line


def test_relay_generations_does_not_call_the_trial_unfinished(sweep) -> None:
    shown = relay("generations", trial_run_id(sweep), workspace=sweep["workspace"])
    assert shown.returncode == 0, shown.stderr
    assert "not finished" not in shown.stdout + shown.stderr


def test_a_second_start_in_the_output_folder_says_what_would_work(sweep) -> None:
    again = relay("tune", str(KE), *overrides(), "--output", str(sweep["output"]), workspace=sweep["workspace"])
    assert again.returncode == 2
    assert "another --output DIR" in again.stderr and "tune.name" not in again.stderr
    other = relay("tune", str(KE), *overrides("other"), "--output", str(sweep["output"]), workspace=sweep["workspace"])
    assert other.returncode == 2
    assert f"holds sweep {SWEEP}, not one named other" in other.stderr, other.stderr


def test_the_python_api_reads_a_trial_of_an_output_sweep(sweep, monkeypatch) -> None:
    """The API looked for the trial's config only in WORKSPACE/tune, where an --output sweep is not."""
    import relay

    monkeypatch.setenv("RELAY_WORKSPACE", str(sweep["workspace"]))
    split = relay.artifact(trial_run_id(sweep), "data/split")
    assert split.num_rows > 0 and "subset" in split.column_names


def test_a_resume_in_another_workspace_is_refused_and_writes_nothing(sweep) -> None:
    """Resumed from a shell without the first one's RELAY_WORKSPACE, the sweep went on in another workspace."""
    elsewhere = sweep["workspace"].parent / "other-ws"
    resumed = relay("tune", str(KE), *overrides(), "--output", str(sweep["output"]), "--resume", workspace=elsewhere)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "started with other stores" in resumed.stderr and str(sweep["workspace"]) in resumed.stderr
    assert not elsewhere.exists()
