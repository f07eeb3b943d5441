"""A generation's and a stage's MLflow run say whose they are: `gen-01 of RUN`, `g01/train of RUN`.

Before, every pipeline run's generation runs were named `gen-00`, `gen-01` and its stage runs `g00/train`, so
where MLflow lists runs of several pipeline runs side by side (a search, the compare view, a chart's legend)
nothing told them apart. The readers find the runs by their tags, which stay; so do a resume's reattached runs.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from orchestrator.tracking.reading import read_generations

RUNS = ("smoke-20261205-070000-ab12", "smoke-20261205-070500-cd34")


def track(uri: str, run_id: str, generations: list[int], resume: bool = False) -> None:
    """The calls the runner makes for a run of ``generations`` (a train and an evaluate stage each)."""
    tracker = MlflowTracker(uri, system_metrics=False)
    tracker.start_pipeline(run_id, "smoke", {"pipeline": "smoke", "seed": 0}, resume=resume)
    for generation in generations:
        for stage, metrics in (("train", {"loss": 1.0}), ("evaluate", {"accuracy": 0.5 + generation / 10})):
            name = f"g{generation:02d}/{stage}"
            tracker.stage_started(name, generation)
            tracker.stage_finished(StageRecord(name, generation, f"fp-{run_id}-{name}", False, "FINISHED", metrics))
    tracker.end_pipeline("FINISHED")


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store holding two pipeline runs of the same pipeline, as a user's workspace does."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    for run_id in RUNS:
        track(uri, run_id, [0, 1])
    return uri


def runs_of_kind(uri: str, kind: str) -> list:
    """Every run of ``kind`` in the store, of any pipeline run: what a search across runs lists in MLflow's UI."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    return client.search_runs([experiment], f"tags.`relay.kind` = '{kind}'")


def test_generation_runs_of_two_pipeline_runs_read_apart(uri: str) -> None:
    names = sorted(run.info.run_name for run in runs_of_kind(uri, "generation"))
    assert names == sorted(f"gen-{g:02d} of {run_id}" for run_id in RUNS for g in (0, 1))


def test_stage_runs_of_two_pipeline_runs_read_apart(uri: str) -> None:
    names = sorted(run.info.run_name for run in runs_of_kind(uri, "stage"))
    stages = ("g00/train", "g00/evaluate", "g01/train", "g01/evaluate")
    assert names == sorted(f"{stage} of {run_id}" for run_id in RUNS for stage in stages)


def test_each_run_s_name_agrees_with_its_tags(uri: str) -> None:
    """The name is what a person reads; the tags, which every reader goes by, say the same."""
    for run in runs_of_kind(uri, "generation") + runs_of_kind(uri, "stage"):
        tags = run.data.tags
        own = tags.get("relay.stage") or f"gen-{int(tags['relay.generation']):02d}"
        assert run.info.run_name == f"{own} of {tags['relay.pipeline_run']}"


def test_the_generations_table_is_still_read_from_the_tags(uri: str) -> None:
    """`relay generations` finds the pipeline run by its `relay.pipeline_run` tag, not by a run name."""
    run_id, rows = read_generations(uri, "relay", RUNS[1])
    assert run_id == RUNS[1]
    assert [(row["generation"], row["evaluate/accuracy"]) for row in rows] == [(0, 0.5), (1, 0.6)]


def test_a_resume_reattaches_a_generation_run_named_before_and_names_it(tmp_path) -> None:
    """A run tracked before the names changed has `gen-00`: a resume reopens that run (found by its tags), not a
    second one, and gives it the name that says whose it is; the generation it adds is named so from the start."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    track(uri, "old", [0])
    client = MlflowClient(uri)
    [generation] = runs_of_kind(uri, "generation")
    client.update_run(generation.info.run_id, name="gen-00")  # as an older Relay named it

    track(uri, "old", [0, 1], resume=True)
    by_generation = {run.data.tags["relay.generation"]: run for run in runs_of_kind(uri, "generation")}
    assert sorted(by_generation) == ["0", "1"]
    assert by_generation["0"].info.run_id == generation.info.run_id
    assert by_generation["0"].info.run_name == "gen-00 of old"
    assert by_generation["1"].info.run_name == "gen-01 of old"
