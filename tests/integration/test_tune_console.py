"""What Ray Tune prints and writes for a sweep with the RunConfig `relay tune` gives it (a real local Ray)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]  # a real local Ray: the serial tier of `make test`, not the parallel one

ROOT = Path(__file__).resolve().parents[2]


def test_a_sweep_prints_no_tensorboard_hint_and_keeps_its_result_files(tmp_path: Path) -> None:
    """Ray Tune printed `tensorboard --logdir /tmp/ray/session_.../driver_artifacts` under every `relay tune`: a
    folder the sweep never needs (its metrics are in MLflow and trials.csv). The CSV and JSON results, which the
    trials table reads back, must still be written. Run in a fresh process: Ray Tune reads its logger switch there."""
    script = textwrap.dedent(
        f"""
        import ray
        from ray import tune
        from orchestrator.tune.sweep import sweep_run_config
        from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data

        def trainable(config):
            tune.report({{"score": 1.0, "generation": 0}})

        ray.init(address="local", num_cpus=1, include_dashboard=False)
        sweep = plan(smoke_data(), output={str(tmp_path / "sweep")!r})
        grid = tune.Tuner(trainable, run_config=sweep_run_config(sweep)).fit()
        print("ROWS", len(grid[0].metrics_dataframe))
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "ROWS 1" in out
    assert "tensorboard" not in out.lower()
    assert "View detailed results here" in out  # Ray Tune's own output is there: the hint alone is gone


def test_a_trial_logs_no_checkpoint_line_per_generation(tmp_path: Path) -> None:
    """A trial checkpoints after every generation, and Ray forwarded each `Checkpoint successfully created at:
    Checkpoint(filesystem=local, path=...)` INFO line (a 300-character path) to the sweep's console. A trial that
    quiets them (``quiet_checkpoint_lines``, as `run_trial` does) logs none; one that does not, beside it, still
    does (so the line is looked for where it would be). Read from the workers' own log files, which each line
    reaches before its trial reports, not from what Ray forwards to the driver at its own pace."""
    ray_temp = Path(tempfile.mkdtemp(prefix="rt-"))  # short: Ray's socket paths under it must stay within 107 bytes
    script = textwrap.dedent(
        f"""
        import os, tempfile
        import ray
        from ray import tune
        from orchestrator.tune.sweep import sweep_run_config
        from orchestrator.tune.trial import quiet_checkpoint_lines
        from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data

        def trainable(config):
            if config["quiet"]:
                quiet_checkpoint_lines()
            with tempfile.TemporaryDirectory() as folder:
                open(os.path.join(folder, "state"), "w").write("1")
                checkpoint = tune.Checkpoint.from_directory(folder)
                tune.report({{"score": 1.0, "generation": 0}}, checkpoint=checkpoint)

        ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir={str(ray_temp)!r})
        sweep = plan(smoke_data(), output={str(tmp_path / "sweep")!r})
        space = {{"quiet": tune.grid_search([False, True])}}
        grid = tune.Tuner(trainable, param_space=space, run_config=sweep_run_config(sweep)).fit()
        print("TRIALS", len(grid))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0 and "TRIALS 2" in done.stdout, done.stdout + done.stderr
        logs = (ray_temp / "session_latest" / "logs").glob("worker-*")
        lines = [line for log in logs for line in log.read_text(errors="replace").splitlines()]
        saved = [line for line in lines if "Checkpoint successfully created at:" in line]
        assert any("quiet=False" in line for line in saved), "the unquieted trial's line was not found"
        assert not any("quiet=True" in line for line in saved), saved
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
