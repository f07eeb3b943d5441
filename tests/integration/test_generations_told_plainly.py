"""`relay generations` on real small runs with nothing to show: no generation yet, or MLflow runs deleted in MLflow.

Why: a run stopped after its split printed a header of every column its pipeline could report (a CReST run's
`pretext probe` among them) and no row, one stopped after its first training printed a `generation` column and an
empty row `0`, and a run whose MLflow runs were deleted with `mlflow runs delete` was "no pipeline run", as if
its id were wrong, while its record still said it ran. Real CLI, real artifact store, real SQLite MLflow store.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.relay_cli import ROOT, relay, runs_by_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
SMALL = ("train.steps=10", "crest.generations=1", "run.executor=local")


def run_smoke(workspace, run_id, *extra):
    result = relay("run", SMOKE, *SMALL, "--run-id", run_id, *extra, workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("stop_after", ["data/split", "g00/train"])
def test_a_run_without_a_generations_result_says_so_in_one_line(tmp_path, stop_after):
    run_smoke(tmp_path, "early", "--stop-after", stop_after)
    shown = relay("generations", "early", workspace=tmp_path)
    assert shown.returncode == 0, shown.stderr[-4000:]
    assert "Run early: no generation has finished yet" in shown.stdout
    assert "(the run is STOPPED)" in shown.stdout
    assert "----------" not in shown.stdout  # no table: neither a header of every column nor an empty row
    assert "pretext probe" not in shown.stdout and "balanced_accuracy" not in shown.stdout


def test_a_run_whose_mlflow_runs_were_deleted_says_so_and_how_to_bring_them_back(tmp_path):
    run_smoke(tmp_path, "gone")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tree = runs_by_name(tmp_path, "gone")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's `mlflow`
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path}
    for name in ("gone", "gen-00", "g00/train"):  # the pipeline run and two nested in it, as a user would
        deleted = subprocess.run(["mlflow", "runs", "delete", "--run-id", tree[name].info.run_id], env=env, check=False)
        assert deleted.returncode == 0

    shown = relay("generations", "gone", workspace=tmp_path)
    assert shown.returncode == 2
    said = shown.stderr
    assert "run gone's MLflow runs were deleted in MLflow" in said
    assert f"its record is still in the artifact store {tmp_path / 'artifacts'}" in said
    assert "relay delete gone" in said
    restore = re.search(r"`(for id in .*?; done)`", said)
    assert restore, said
    ids = restore.group(1).split(";")[0].split()[3:]
    assert ids[0] == tree["gone"].info.run_id  # the pipeline run first, then the runs nested in it
    assert sorted(ids[1:]) == sorted([tree["gen-00"].info.run_id, tree["g00/train"].info.run_id])

    brought_back = subprocess.run(["bash", "-c", restore.group(1)], env=env, capture_output=True, text=True)
    assert brought_back.returncode == 0, brought_back.stderr[-2000:]
    shown = relay("generations", "gone", workspace=tmp_path)
    assert shown.returncode == 0, shown.stderr[-4000:]
    assert re.search(r"^0\s+\d\.\d{4}", shown.stdout, re.MULTILINE), shown.stdout
