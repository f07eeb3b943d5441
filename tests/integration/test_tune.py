"""`relay tune` through the real CLI: a 4-trial ASHA sweep on tiny digits, interrupted, resumed, then its best.yaml run.

One ASHA sweep serves most tests (Ray start-up dominates on 2 cores): it is interrupted
with SIGINT once two trials have ended, resumed with --resume, and the
assertions read its outputs, its MLflow tree and its Ray Tune state.
The space is a grid over train.lr whose first value is the only one that learns; the
sweep's seed is chosen so that the shuffled grid runs it first, so with one trial at a
time ASHA must stop later trials after generation 0. A second, uninterrupted sweep runs
synchronous successive halving (scheduler sha).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from orchestrator.config import TuneSettings, load_yaml
from orchestrator.tune.space import shuffled_grid
from tests.integration.relay_cli import relay, relay_env

# A sweep fixture takes 20 min at load 20 on 2 cores; the interrupted one may wait THIRD_TRIAL_S for its third
# trial, then up to 240 s for the CLI to exit and 600 s for the resumed sweep (the timeout includes fixtures).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
SWEEP = "tiny-sweep"
OVERRIDES = [
    "train.steps=15",
    "train.ema_decay=0.5",
    "train.report_every=15",
    "crest.generations=3",
    "tracking.log_models=false",
    "tracking.system_metrics=false",
]
LRS = [0.05, 1e-6, 2e-6, 3e-6]
THIRD_TRIAL_S = 1200  # how long the interrupted sweep may take to start its third trial


def tune_config(tmp: Path, name: str = SWEEP, scheduler: str = "asha", lrs: list[float] = LRS) -> Path:
    data = load_yaml(SMOKE)
    data["tune"] = {
        "name": name,
        "metric": "evaluate/balanced_accuracy",
        "mode": "max",
        "num_samples": 1,
        "scheduler": scheduler,
        "grace_period": 1,
        "reduction_factor": 2,
        "space": {"train.lr": {"grid": lrs}},
    }
    data["tune"]["seed"] = seed_running_first(TuneSettings(**data["tune"]), lrs[0])
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def seed_running_first(settings: TuneSettings, lr: float) -> int:
    """A sweep seed whose shuffled grid starts with ``lr``."""
    return next(seed for seed in range(100) if shuffled_grid(settings, seed)[0]["train.lr"] == lr)


def env(workspace: Path) -> dict[str, str]:
    return relay_env(workspace)


def mlflow_runs(workspace: Path, query: str = "") -> list:
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], query, max_results=2000)


def trial_runs(workspace: Path) -> list[str]:
    """Pipeline run ids of the trials that have started, in trial order (one trial at a time on 2 cores)."""
    return sorted(
        path.name for path in (workspace / "artifacts" / "runs").glob(f"{SWEEP}-*") if (path / "ledger.json").exists()
    )


def start_tune(config: Path, workspace: Path, out: Any, own_group: bool = False) -> subprocess.Popen:
    """`relay tune CONFIG` in a new process writing to ``out`` (``own_group``: a process group of its own)."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "tune", str(config), *OVERRIDES],
        cwd=ROOT,
        env=env(workspace),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,
    )


def interrupt_during_third_trial(config: Path, workspace: Path, log: Path) -> int:
    """Start the sweep, send SIGINT (Ctrl+C) once the third trial has started; returns the exit code.

    By then trial 0 (the only lr that learns) has completed and trial 1 has been stopped by
    ASHA against it: Ray Tune does not save scheduler state, so a resumed sweep's ASHA
    compares only the trials it runs itself.
    """
    with log.open("w") as out:
        process = start_tune(config, workspace, out)
        deadline = time.monotonic() + THIRD_TRIAL_S
        while len(trial_runs(workspace)) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        started = len(trial_runs(workspace))
        too_slow = started < 3 and process.poll() is None  # the deadline came before the third trial
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        code = process.wait(timeout=240)
    if too_slow:  # interrupted now, the sweep would not test what the assertions read: say why instead
        pytest.fail(
            f"machine too slow: only {started} trials started in {THIRD_TRIAL_S} s (3 needed before the interrupt);"
            f" sweep log:\n{log.read_text()[-4000:]}"
        )
    return code


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("tune")
    workspace, config = tmp / "ws", tune_config(tmp)
    first_code = interrupt_during_third_trial(config, workspace, tmp / "first.log")
    first_log = (tmp / "first.log").read_text()
    done_before = set(trial_runs(workspace)[:2])
    ledgers = {
        run_id: (workspace / "artifacts" / "runs" / run_id / "ledger.json").stat().st_mtime_ns for run_id in done_before
    }
    stage_runs = {
        run_id: len(mlflow_runs(workspace, f"tags.`relay.pipeline_run` = '{run_id}'")) for run_id in done_before
    }
    resumed = relay("tune", str(config), *OVERRIDES, "--resume", workspace=workspace)
    return {
        "workspace": workspace,
        "config": config,
        "first_code": first_code,
        "first_log": first_log,
        "done_before": done_before,
        "ledgers": ledgers,
        "stage_runs": stage_runs,
        "resumed": resumed,
        "output": workspace / "tune" / SWEEP,
    }


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(sweep) -> None:
    assert sweep["first_code"] == 130, sweep["first_log"][-4000:]  # Ctrl-C, as `relay run` exits
    assert "--resume" in sweep["first_log"]
    resumed = sweep["resumed"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-4000:]
    assert len(sweep["done_before"]) == 2, "the sweep ended before the interrupt"
    workspace = sweep["workspace"]
    for run_id in sweep["done_before"]:
        assert (workspace / "artifacts" / "runs" / run_id / "ledger.json").stat().st_mtime_ns == sweep["ledgers"][
            run_id
        ]
        assert len(mlflow_runs(workspace, f"tags.`relay.pipeline_run` = '{run_id}'")) == sweep["stage_runs"][run_id]
    records = json.loads((sweep["output"] / "trials.json").read_text())
    assert len(records) == 4 and all(r["status"] in ("completed", "stopped early") for r in records)
    for record in records:  # every generation reported exactly once, even for the trial cut by the interrupt
        progress = next((sweep["output"] / "ray" / SWEEP).glob(f"*{record['trial_id']}*/progress.csv")).read_text()
        assert len(progress.strip().splitlines()) - 1 == record["generations"]


HOLDER = """
import fcntl, os, sys
folder = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock a sweep's driver holds on its folder
print("held", flush=True)
sys.stdin.read()  # until the test closes it
"""


def test_a_resume_while_the_sweeps_driver_runs_is_refused_and_changes_nothing(sweep) -> None:
    """A `--resume` beside a live driver ran the same trials a second time; its Ctrl-C marked the live sweep
    KILLED and its trials INTERRUPTED. The folder is held by its driver here as `relay tune` holds it."""
    output = sweep["output"]
    before = {path: path.stat().st_mtime_ns for path in output.iterdir() if path.is_file()}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(output)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = relay("tune", str(sweep["config"]), *OVERRIDES, "--resume", workspace=sweep["workspace"])
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-3000:]
    assert f"sweep {SWEEP} is still running: another `relay tune` on this machine holds {output}" in refused.stderr
    assert {path: path.stat().st_mtime_ns for path in output.iterdir() if path.is_file()} == before


def test_asha_stops_weak_trials_at_generation_boundaries(sweep) -> None:
    records = json.loads((sweep["output"] / "trials.json").read_text())
    by_lr = {r["train.lr"]: r for r in records}
    assert set(by_lr) == set(LRS)
    assert by_lr[LRS[0]]["status"] == "completed" and by_lr[LRS[0]]["generations"] == 3
    stopped = [r for r in records if r["status"] == "stopped early"]
    assert stopped and all(r["generations"] < 3 for r in stopped)
    assert "stopped early" in sweep["resumed"].stdout and "g02" in sweep["resumed"].stdout


def test_trials_csv_writes_floats_without_float_noise(sweep) -> None:
    """trials.csv showed balanced accuracies such as 0.32999999999999996 (a mean of per-class recalls)."""
    with (sweep["output"] / "trials.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    cells = [row[key] for row in table for key in ("train.lr", "g00", "g01", "g02") if row.get(key)]
    assert any(float(cell) not in LRS for cell in cells)  # metrics are among them
    for cell in cells:
        assert float(f"{float(cell):.12g}") == float(cell), cell  # 12 significant digits at most


def test_mlflow_tree_sweep_trials_generations(sweep) -> None:
    workspace = sweep["workspace"]
    [parent] = mlflow_runs(workspace, f"tags.`relay.sweep` = '{SWEEP}' and tags.`relay.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["relay.pipeline"] == "crest"  # the kind, as on its trials (relay.name: the config's)
    assert parent.data.params["tune.scheduler"] == "asha"
    assert float(parent.data.tags["best.train.lr"]) == LRS[0]
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    assert {"trials.csv", "trials.json", "best.yaml"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    trials = mlflow_runs(workspace, f"tags.`relay.sweep` = '{SWEEP}' and tags.`relay.kind` = 'pipeline'")
    assert len(trials) == 4
    for trial in trials:
        tags = trial.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.info.run_name == f"{SWEEP}-{tags['relay.tune.trial_id']}"
        assert float(tags["tune.train.lr"]) in LRS
        assert trial.info.status in ("FINISHED", "KILLED")
        assert "relay.registered_models" not in tags  # logged, not registered: aliases stay with `relay run`s
        gens = mlflow_runs(
            workspace, f"tags.`relay.pipeline_run` = '{trial.info.run_name}' and tags.`relay.kind` = 'generation'"
        )
        assert len(gens) == int(tags["relay.tune.generations"])
        assert all(g.data.tags["mlflow.parentRunId"] == trial.info.run_id and g.info.status == "FINISHED" for g in gens)


def test_best_yaml_runs_with_relay_run(sweep) -> None:
    best = sweep["output"] / "best.yaml"
    data = load_yaml(best)
    assert "tune" not in data and data["train"]["lr"] == LRS[0] and data["train"]["steps"] == 15
    result = relay("run", str(best), "run.executor=local", "--run-id", "best-1", workspace=sweep["workspace"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "balanced_accuracy" in result.stdout


# --- synchronous successive halving -------------------------------------------------------------

SHA_SWEEP = "tiny-sha"
SHA_LRS = [1e-6, 0.05, 2e-6, 0.03]  # two learn, two do not; generation 0 ranks them
SHA_OVERRIDES = [*OVERRIDES[:3], "crest.generations=2", *OVERRIDES[4:]]


@pytest.fixture(scope="module")
def sha_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("sha")
    workspace = tmp / "ws"
    result = relay("tune", str(tune_config(tmp, SHA_SWEEP, "sha", SHA_LRS)), *SHA_OVERRIDES, workspace=workspace)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    records = json.loads((workspace / "tune" / SHA_SWEEP / "trials.json").read_text())
    # Shown with a failing test (pytest prints a fixture's output): what the scheduler decided, and why trials failed.
    print(*(f"{r['trial_id']}: {r['status']}, {r['generations']} generation(s)" for r in records), sep="\n")
    print(*(line for line in result.stderr.splitlines() if "orchestrator.tune.schedulers" in line), sep="\n")
    for error in sorted((workspace / "tune" / SHA_SWEEP / "ray").rglob("error.txt")):
        print(error.parent.name, error.read_text()[-2000:])
    return {"workspace": workspace, "records": records}


def test_sha_keeps_the_best_half_of_generation_0_and_stops_the_rest(sha_sweep) -> None:
    records = sha_sweep["records"]
    assert len(records) == 4
    kept = [r for r in records if r["status"] == "completed"]
    stopped = [r for r in records if r["status"] == "stopped early"]
    assert len(kept) == 2 and all(r["generations"] == 2 for r in kept), records
    assert len(stopped) == 2 and all(r["generations"] == 1 for r in stopped), records
    assert min(r["g00"] for r in kept) >= max(r["g00"] for r in stopped)


def test_sha_runs_generation_1_only_after_every_trial_ran_generation_0(sha_sweep) -> None:
    """Every trial's generation-0 metric (its evaluate stage) is in before any generation-1 stage starts.

    Stage runs end with their stage (generation runs end with the trial, after a pause). A kept
    trial's pseudo-labeling of generation 0 runs after the halving, so only evaluate counts.
    """
    stages = mlflow_runs(sha_sweep["workspace"], "tags.`relay.kind` = 'stage'")
    ends_of_g0 = [s.info.end_time for s in stages if s.data.tags.get("relay.stage") == "g00/evaluate"]
    starts_of_g1 = [s.info.start_time for s in stages if s.data.tags.get("relay.generation") == "1"]
    assert ends_of_g0 and starts_of_g1 and all(ends_of_g0)
    assert min(starts_of_g1) >= max(ends_of_g0)
    assert len(ends_of_g0) == 4 and {s.data.tags["relay.pipeline_run"] for s in stages} == {
        f"{SHA_SWEEP}-{r['trial_id']}" for r in sha_sweep["records"]
    }


def test_ctrl_c_before_any_trial_leaves_a_sweep_that_starts_again(tmp_path: Path) -> None:
    """Interrupted while Ray started, a sweep left only sweep-config.yaml: neither --resume (no state) nor a
    new start (a folder not empty) took it, no hint was printed, and MLflow said FAILED."""
    workspace, log = tmp_path / "ws", tmp_path / "tune.log"
    config = tune_config(tmp_path, name="early")
    saved = workspace / "tune" / "early" / "sweep-config.yaml"
    with log.open("w") as out:
        process = start_tune(config, workspace, out, own_group=True)
        deadline = time.monotonic() + 300
        while not saved.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        code = process.wait(timeout=300)
    output = log.read_text()
    assert code == 130, output[-3000:]
    again = f"RELAY_WORKSPACE={workspace} relay tune {config}"  # the shell's workspace leads the command
    if "before any trial started" in output:  # the usual case: Ray was still starting
        assert not saved.exists() and f"start it again with: {again}" in output
    else:  # Ray Tune had saved its state: --resume continues it
        assert f"continue it with: {again}" in output and "--resume" in output
    (sweep_run,) = mlflow_runs(workspace, "tags.`relay.kind` = 'sweep'")
    assert sweep_run.info.status == "KILLED"


def test_sigterm_closes_the_sweep_and_its_open_trials_as_killed(tmp_path: Path) -> None:
    """SIGTERM (`kill`, a scheduler, Ray's job stop after its grace) ends the driver inside Ray Tune's loop: the
    sweep's MLflow run read FAILED and its trial's pipeline run RUNNING for good, and nothing said how to go on."""
    workspace, log = tmp_path / "ws", tmp_path / "tune.log"
    config = tune_config(tmp_path, name="termed", scheduler="none", lrs=[0.05])
    with log.open("w") as out:
        process = start_tune(config, workspace, out)
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            if (workspace / "mlflow.db").exists() and mlflow_runs(workspace, "tags.`relay.kind` = 'generation'"):
                break  # a trial is inside its first generation: its pipeline run is open
            time.sleep(0.5)
        assert process.poll() is None, log.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=240)
    output = log.read_text()
    assert "sweep terminated (SIGTERM); continue it with:" in output and "--resume" in output, output[-3000:]
    assert process.returncode == 143, "128 + SIGTERM, as relay run ends and as timeout and schedulers expect"
    (sweep_run,) = mlflow_runs(workspace, "tags.`relay.kind` = 'sweep'")
    assert sweep_run.info.status == "KILLED"
    trials = mlflow_runs(workspace, "tags.`relay.kind` = 'pipeline'")
    assert trials and {run.info.status for run in trials} <= {"KILLED", "FINISHED"}, [r.info.status for r in trials]
    assert not [run for run in mlflow_runs(workspace) if run.info.status == "RUNNING"]
