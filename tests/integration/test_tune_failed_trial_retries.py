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
    """Beside a trial that scores: the sweep exits 0 with that one as its best, the failed one named with its cause,
    each failed attempt one console line (Ray Tune logged ~50 lines of its own frames for each)."""
    workspace = tmp_path / "ws"
    done = relay(
        "tune", str(smoke_sweep(tmp_path, "diverging", [1e12, 0.05])), *OVERRIDES, workspace=workspace, timeout_s=800
    )
    assert done.returncode == 0, done.stderr[-4000:]
    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name("relay")
    trained = client.search_runs([experiment.experiment_id], "tags.`relay.stage` = 'g00/train'")
    assert sorted(run.info.status for run in trained) == ["FAILED", "FINISHED"], "a stage trained more than once"
    (error_file,) = (workspace / "tune" / "diverging" / "ray" / "diverging").glob("run_trial_*/error.txt")
    error = error_file.read_text()
    assert "loss is nan" in error and "so it is not run again" in error
    assert "relay tune CONFIG --resume" in error

    attempts = [line for line in done.stderr.splitlines() if "Trial task failed for trial" in line]
    assert len(attempts) == 3 and all("loss is nan" in line for line in attempts), done.stderr[-4000:]
    assert "ray/_private/worker.py" not in done.stderr, "Ray Tune's traceback of a failed attempt is one line"
    assert "failed (RepeatedTrialFailure: StageError: stage 'g00/train'" in done.stderr
    assert f"its error is in {error_file}" in done.stderr
    best = (workspace / "tune" / "diverging" / "best.yaml").read_text()
    assert "lr: 0.05" in best
