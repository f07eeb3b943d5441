"""What Ray Tune prints and writes for a sweep with the RunConfig `relay tune` gives it (a real local Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
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
