"""A stage's `relay.attempt` tags count 1, 2, 3, 4 over repeated resumes, whatever order the store lists runs in.

The earlier attempts' runs came newest first and each added one on top of the highest tag seen so far,
so the tags went 1, 2, 4, 7.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mlflow import MlflowClient

from orchestrator.tracking.mlflow_tracker import MlflowTracker


def test_each_resume_of_an_interrupted_stage_tags_the_next_attempt(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for attempt in range(4):
        tracker = MlflowTracker(uri, "relay", artifact_location=(tmp_path / "mlartifacts").as_uri())
        tracker.start_pipeline("run-r", "toy", {}, resume=attempt > 0)
        tracker.stage_started("g00/train", 0)
        tracker.end_pipeline("KILLED")  # Ctrl-C mid-stage
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    stage_runs = client.search_runs([experiment], "tags.`relay.kind` = 'stage'")
    assert sorted(int(run.data.tags["relay.attempt"]) for run in stage_runs) == [1, 2, 3, 4]


def stage_run(name: str, attempt: int | None) -> SimpleNamespace:
    tags = {"relay.stage": name, **({"relay.attempt": str(attempt)} if attempt else {})}
    return SimpleNamespace(data=SimpleNamespace(tags=tags), info=SimpleNamespace(run_name=name))


def test_the_count_is_the_same_in_any_order_and_counts_untagged_runs_of_older_relay() -> None:
    from orchestrator.tracking.interruptions import attempts_so_far

    tagged = [stage_run("g00/train", n) for n in (1, 2, 3)]
    assert attempts_so_far(tagged) == attempts_so_far(tagged[::-1]) == {"g00/train": 3}
    older = [stage_run("g00/train", None), stage_run("g00/train", None), stage_run("split", 1)]
    assert attempts_so_far(older) == {"g00/train": 2, "split": 1}
    assert attempts_so_far([stage_run("g00/train", 2), *older[:2]]) == {"g00/train": 3}


def test_the_engine_s_number_is_the_tag_and_the_earlier_tags_are_its_floor(tmp_path: Path) -> None:
    """The tag is the attempt the engine gives (the run record's count); one below the earlier runs' tags
    (a ledger of older Relay counted one driver's attempts) is raised past them, never tagged twice."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for resume, attempt in ((False, 3), (True, 1), (True, None)):  # the engine's numbers; None: none given
        tracker = MlflowTracker(uri, "relay", artifact_location=(tmp_path / "mlartifacts").as_uri())
        tracker.start_pipeline("run-e", "toy", {}, resume=resume)
        tracker.stage_started("g00/train", 0, attempt=attempt)
        tracker.end_pipeline("KILLED")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    stage_runs = client.search_runs([experiment], "tags.`relay.kind` = 'stage'")
    assert sorted(int(run.data.tags["relay.attempt"]) for run in stage_runs) == [3, 4, 5]


def test_a_retry_in_the_same_driver_retags_the_stage_s_open_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay", artifact_location=(tmp_path / "mlartifacts").as_uri())
    tracker.start_pipeline("run-t", "toy", {}, resume=False)
    tracker.stage_started("g00/train", 0, attempt=2)
    tracker.stage_started("g00/train", 0, attempt=3)  # the runner's retry: no second run
    tracker.end_pipeline("KILLED")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    (run,) = client.search_runs([experiment], "tags.`relay.kind` = 'stage'")
    assert run.data.tags["relay.attempt"] == "3"


def test_a_cache_hit_s_run_is_no_attempt_of_older_relay_either() -> None:
    from orchestrator.tracking.interruptions import attempts_so_far

    cached = stage_run("g00/train", 1)
    cached.data.tags["cache_hit"] = "true"
    assert attempts_so_far([cached, stage_run("split", 1)]) == {"split": 1}
