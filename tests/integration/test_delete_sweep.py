"""`relay delete SWEEP` on a real sweep: its trials, its MLflow sweep run and its folder go; what another run uses stays.

Why: a sweep's trials are runs of their own, so deleting a sweep meant typing every trial's id, and the sweep's
MLflow run and folder (Ray Tune's state, trials.csv, best.yaml) could not be deleted with `relay` at all. Real
pieces: a 2-trial `relay tune` and a `relay run` sharing its data split, in one workspace; the refusal of a sweep
whose driver runs is checked with another process holding the sweep's folder locked, as `relay tune` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import ViewType

from tests.integration.relay_cli import ROOT, mlflow_client, relay, smoke_sweep
from tests.integration.test_delete_and_gc import fingerprints, relay_off_a_terminal, stage_folder, tree

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
SMALL = ("crest.generations=1", "train.steps=10", "tracking.log_models=false", "tracking.system_metrics=false")
HOLD = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def sweep_runs(workspace: Path, view: ViewType) -> list:
    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name("relay")
    return client.search_runs([experiment.experiment_id], "tags.`relay.sweep` = 'tiny'", run_view_type=view)


def test_deleting_a_sweep_by_name_removes_its_trials_run_and_folder_and_keeps_what_others_use(tmp_path) -> None:
    workspace = tmp_path / "ws"
    swept = relay("tune", str(smoke_sweep(tmp_path, "tiny", [0.03, 0.05])), *SMALL, workspace=workspace, timeout_s=800)
    assert swept.returncode == 0, swept.stderr[-4000:]
    ran = relay("run", str(SMOKE), *SMALL, "run.executor=local", "--run-id", "kept", workspace=workspace)
    assert ran.returncode == 0, ran.stderr[-4000:]
    folder = workspace / "tune" / "tiny"
    trials = sorted(path.name for path in (workspace / "artifacts" / "runs").glob("tiny-*"))
    assert len(trials) == 2 and (folder / "best.yaml").is_file()
    before = tree(workspace)

    unasked = relay_off_a_terminal("delete", "tiny", workspace=workspace)
    assert unasked.returncode == 2 and "add --yes" in unasked.stderr
    assert f"sweep tiny: its 2 trial run(s) below; its folder {folder}/" in unasked.stdout
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        driven = relay("delete", "tiny", "--yes", workspace=workspace)
    finally:
        holder.kill()
        holder.wait()
    assert driven.returncode == 2 and "sweep tiny is not deleted: its `relay tune` is running" in driven.stderr
    assert tree(workspace) == before and folder.is_dir()

    deleted = relay("delete", "tiny", "--yes", workspace=workspace)
    assert deleted.returncode == 0, deleted.stderr[-4000:]
    assert not folder.exists()
    assert not any((workspace / "artifacts" / "runs" / trial).exists() for trial in trials)
    assert sweep_runs(workspace, ViewType.ACTIVE_ONLY) == []
    assert {run.data.tags.get("relay.kind") for run in sweep_runs(workspace, ViewType.DELETED_ONLY)} >= {"sweep"}
    listed = relay("runs", workspace=workspace)
    assert [line.split()[0] for line in listed.stdout.splitlines()[2:]] == ["kept"]
    kept = fingerprints(workspace, "kept")
    assert stage_folder(workspace, kept["data/split"]).is_dir()  # the trials shared it with the kept run
    again = relay("delete", "tiny", "--yes", workspace=workspace)
    assert again.returncode == 2 and "no run or sweep 'tiny'" in again.stderr
