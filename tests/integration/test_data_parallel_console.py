"""A data-parallel stage's console holds Relay's lines, not Ray Train's account of its own internals.

Before, every data-parallel stage of `relay run` printed about eight of Ray Train's INFO lines (the resources it
requests, its worker group's ranks and pids, "Setting up process group", "Checkpoint successfully created at" with
a 150-character path, "Reporting training result 1: TrainingReport(...)" from each rank) and Ray's C++ ERROR line
on Ray Train's PreemptionWatcher actor, with a link to Ray's issue tracker. A real `relay run` (2 workers, gloo,
a local Ray whose temporary folder the test owns); the lines are looked for in Ray's own files of the workers'
output, which each line reaches before the stage ends (what Ray forwards to the driver comes at its own pace).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.cluster import VENV_BIN, ray_temp_dir, user_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
TRAIN_INTERNALS = ("Started training worker group of size", "Requesting resources:", "Checkpoint successfully created")


def test_a_two_worker_stage_prints_none_of_ray_trains_info_lines(tmp_path: Path) -> None:
    ray_temp = ray_temp_dir(tmp_path)
    env = {**user_env(tmp_path / "home"), "RAY_TMPDIR": str(ray_temp), "RELAY_WORKSPACE": str(tmp_path / "ws")}
    argv = [str(VENV_BIN / "relay"), "run", str(SMOKE), "resources.train.workers=2", "run.num_cpus=3"]
    done = subprocess.run(
        [*argv, "crest.generations=1", "train.steps=4", "--stop-after", "g00/train"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert "done g00/train" in console

    outputs = list(ray_temp.rglob("session_*/logs/worker-*"))
    lines = [line for path in outputs for line in path.read_text(errors="replace").splitlines()]
    assert ":actor_name:TrainController" in lines, "Ray Train's controller's output was not found"
    assert not [line for line in lines if any(internal in line for internal in TRAIN_INTERNALS)]
    assert "PreemptionWatcher" not in console
    assert "Reporting training result" not in console
