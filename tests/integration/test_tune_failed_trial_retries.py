"""A real `relay tune` whose one trial diverges: Ray Tune's retries of the trial do not train the stage again.

Why: Ray Tune retries a failed trial twice (``sweep.TRIAL_RETRIES``), and a trial whose training diverged
(``FloatingPointError: loss is nan``) trained ``g00/train`` three times with the same code, values, inputs and
seed: three MLflow runs of the stage, each FAILED the same way. A retry of that trial now fails at once with
the kept failure, saying how to go on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.relay_cli import mlflow_client, relay, smoke_sweep

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OVERRIDES = ("crest.generations=1", "train.steps=20", "tracking.log_models=false", "tracking.system_metrics=false")


def test_a_diverged_trial_trains_its_stage_once_and_its_retries_say_why_they_stop(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    done = relay(
        "tune", str(smoke_sweep(tmp_path, "diverging", [1e12])), *OVERRIDES, workspace=workspace, timeout_s=800
    )
    assert done.returncode == 1, done.stderr[-4000:]
    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name("relay")
    trained = client.search_runs([experiment.experiment_id], "attributes.run_name = 'g00/train'")
    assert [run.info.status for run in trained] == ["FAILED"], "the diverged stage was trained more than once"
    (error_file,) = (workspace / "tune" / "diverging" / "ray" / "diverging").glob("run_trial_*/error.txt")
    error = error_file.read_text()
    assert "loss is nan" in error and "so it is not run again" in error
    assert "relay tune CONFIG --resume" in error
