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


def test_a_trial_cut_off_while_closing_its_generations_has_each_one_tagged(tmp_path: Path) -> None:
    """Tune ends a stopped trial's process without waiting for its last writes: its end_pipeline closed gen-00
    but was cut before tagging it, and gen-01 was left open. Before: the driver closed gen-01 FINISHED with no
    relay.status, and gen-00 kept none (3 of 7 generation runs of an ASHA sweep)."""
    from mlflow import MlflowClient

    from orchestrator.tracking.common import TAG_GENERATION, TAG_KIND, TAG_PIPELINE_RUN, TAG_STATUS
    from orchestrator.tracking.mlflow_tracker import MlflowTracker

    sweep = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", strict=True)
    parent = sweep.start("s1-sweep", "s1", {}, "space: {}\n", output="/ws/tune/s1-sweep")
    trial = MlflowTracker(sweep.tracking_uri, strict=True, parent_run_id=parent)
    trial.start_pipeline("s1-sweep-abcde_00000", "s1", {"pipeline": "s1"}, resume=True)
    trial.stage_started("g00/train", 0)
    trial.stage_started("g01/train", 1)
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    query = f"tags.`{TAG_PIPELINE_RUN}` = 's1-sweep-abcde_00000' and tags.`{TAG_KIND}` = 'generation'"
    generations = {run.data.tags[TAG_GENERATION]: run.info.run_id for run in client.search_runs([experiment], query)}
    client.set_terminated(generations["0"], status="FINISHED")  # where the trial's own end_pipeline was cut off
    sweep.close_trial("s1-sweep-abcde_00000", "FINISHED", {TAG_STATUS: "FINISHED"})
    ended = {gen: client.get_run(run) for gen, run in generations.items()}
    assert {gen: (run.info.status, run.data.tags.get(TAG_STATUS)) for gen, run in ended.items()} == {
        "0": ("FINISHED", "FINISHED"),
        "1": ("FINISHED", "FINISHED"),
    }


def test_a_trial_closes_with_the_tags_its_own_end_gave_kept(tmp_path: Path) -> None:
    """The driver's closing adds what is missing; a generation the trial itself closed and tagged keeps its word."""
    from mlflow import MlflowClient

    from orchestrator.tracking.common import TAG_STATUS

    tracker = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", strict=True)
    tracker.start("s1-sweep", "s1", {}, "space: {}\n", output="/ws/tune/s1-sweep")
    client = MlflowClient(tracker.tracking_uri)
    runs = _trial_runs(client, "s1-sweep-abcde_00001")
    client.set_terminated(runs["gen-00"], status="KILLED")
    client.set_tag(runs["gen-00"], TAG_STATUS, "STOPPED")
    tracker.close_trial("s1-sweep-abcde_00001", "KILLED", {TAG_STATUS: "INTERRUPTED"}, interrupted=True)
    assert client.get_run(runs["gen-00"]).data.tags[TAG_STATUS] == "STOPPED"
    assert client.get_run(runs["g01/train"]).data.tags[TAG_STATUS] == "INTERRUPTED"
