"""The sweep's MLflow parent run: a new sweep gets its own, a resumed one finds the one it started; how trials close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.tracking.sweeps import SweepTracker


def started(tmp_path: Path, output: str, resume: bool = False) -> str | None:
    tracker = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", strict=True)
    return tracker.start("s1-sweep", "s1", {"tune.num_samples": "1"}, "space: {}\n", output=output, resume=resume)


def test_a_second_sweep_of_the_same_name_gets_its_own_parent(tmp_path: Path) -> None:
    """Before, `relay tune s1.yaml --output other` nested its trials under the first sweep and overwrote its best."""
    first = started(tmp_path, "/ws/tune/s1-sweep")
    second = started(tmp_path, "/elsewhere/other")
    third = started(tmp_path, "/ws/tune/s1-sweep")  # a new sweep at the same folder (the old one was removed)
    assert len({first, second, third}) == 3 and None not in {first, second, third}


def test_resume_finds_the_parent_of_the_sweep_at_that_folder(tmp_path: Path) -> None:
    first = started(tmp_path, "/ws/tune/s1-sweep")
    other = started(tmp_path, "/elsewhere/other")
    assert started(tmp_path, "/ws/tune/s1-sweep", resume=True) == first
    assert started(tmp_path, "/elsewhere/other", resume=True) == other


def _trial_runs(client: Any, run_id: str) -> dict[str, str]:
    """A trial's pipeline run, one finished generation run and one stage run left RUNNING; name -> run id."""
    from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN

    experiment = client.get_experiment_by_name("relay").experiment_id
    runs = {}
    for name, kind in ((run_id, "pipeline"), ("gen-00", "generation"), ("g01/train", "stage")):
        tags = {TAG_PIPELINE_RUN: run_id, TAG_KIND: kind}
        runs[name] = client.create_run(experiment, tags=tags, run_name=name).info.run_id
    client.set_terminated(runs["gen-00"], status="FINISHED")
    return runs


@pytest.mark.parametrize(
    ("status", "interrupted", "still_open"),
    [("KILLED", False, "FINISHED"), ("KILLED", True, "KILLED"), ("FAILED", False, "FAILED")],
)
def test_a_closed_trials_open_runs_end_as_the_trial_did(
    tmp_path: Path, status: str, interrupted: bool, still_open: str
) -> None:
    """A trial stopped by its scheduler stops between generations, so its open runs are complete; one a Ctrl-C
    interrupted was cut off mid-stage, and its open runs read FINISHED too (now KILLED, as a `relay run`'s)."""
    from mlflow import MlflowClient

    tracker = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", strict=True)
    tracker.start("s1-sweep", "s1", {}, "space: {}\n", output="/ws/tune/s1-sweep")
    client = MlflowClient(tracker.tracking_uri)
    runs = _trial_runs(client, "s1-sweep-abcde_00002")
    tracker.close_trial("s1-sweep-abcde_00002", status, {"relay.status": "X"}, interrupted=interrupted)
    assert client.get_run(runs["s1-sweep-abcde_00002"]).info.status == status
    assert client.get_run(runs["s1-sweep-abcde_00002"]).data.tags["relay.status"] == "X"
    assert client.get_run(runs["g01/train"]).info.status == still_open
    assert client.get_run(runs["gen-00"]).info.status == "FINISHED"
