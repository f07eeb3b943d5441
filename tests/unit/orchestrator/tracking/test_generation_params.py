"""Generation runs carry the pipeline's params and their index, so MLflow's compare view lines them up.

Before the fix, MLflow's compare view of gen-00 and gen-01 runs showed no params at all (they were logged on the
parent pipeline run only), so nothing told the generations or their settings apart.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from orchestrator.engine.records import StageRecord
from orchestrator.tracking.mlflow_tracker import MlflowTracker

CONFIG = {"pipeline": "crest", "seed": 0, "train": {"steps": 5, "lr": 0.03}, "crest": {"generations": 2}}


def track(tracker: MlflowTracker, run_id: str, config: dict, generations: list[int], resume: bool = False) -> None:
    """The calls the runner makes for a run of ``generations`` (one train stage each)."""
    tracker.start_pipeline(run_id, "toy", config, resume=resume)
    for generation in generations:
        stage = f"g{generation:02d}/train"
        tracker.stage_started(stage, generation)
        tracker.stage_finished(StageRecord(stage, generation, f"fp-{stage}", False, "FINISHED", {"loss": 1.0}))
    tracker.end_pipeline("FINISHED")


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating one costs seconds); each test names its own runs."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def generation_params(uri: str, run_id: str) -> dict[str, dict[str, str]]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("relay").experiment_id
    query = f"tags.`relay.pipeline_run` = '{run_id}' and tags.`relay.kind` = 'generation'"
    return {
        run.info.run_name.removesuffix(f" of {run_id}"): run.data.params
        for run in client.search_runs([experiment], query)
    }


def test_each_generation_run_has_the_pipeline_params_and_its_index(uri: str) -> None:
    track(MlflowTracker(uri), "run-a", CONFIG, [0, 1])

    params = generation_params(uri, "run-a")
    assert set(params) == {"gen-00", "gen-01"}
    for name, logged in params.items():
        assert logged["generation"] == str(int(name[-2:]))
        assert logged["train.steps"] == "5" and logged["train.lr"] == "0.03" and logged["crest.generations"] == "2"
        assert logged["pipeline"] == "crest" and logged["seed"] == "0"


def test_a_generation_opened_on_resume_has_the_values_it_ran_with(uri: str) -> None:
    """A PBT trial goes on at its next generation with new values: that generation's run records them."""
    track(MlflowTracker(uri), "trial", CONFIG, [0])
    mutated = {**CONFIG, "train": {"steps": 5, "lr": 0.06}}
    track(MlflowTracker(uri), "trial", mutated, [0, 1], resume=True)  # gen-00 reattached, gen-01 new

    params = generation_params(uri, "trial")
    assert params["gen-00"]["train.lr"] == "0.03" and params["gen-01"]["train.lr"] == "0.06"
    assert params["gen-01"]["generation"] == "1"
