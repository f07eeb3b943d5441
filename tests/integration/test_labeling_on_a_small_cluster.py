"""A labeling stage with more workers than the cluster holds runs on its own task, and the log says so, not a wait.

On a cluster shrunk to 1 CPU, `resources.pseudo_label.workers=2` was warned of as "it will wait until an
autoscaler adds nodes that have them", then the stage finished 5 s later: its own task labels every shard
(the documented fallback). Here on a real local Ray of 1 CPU, with a real sharded stage.
"""

from __future__ import annotations

import logging

import pytest

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner, StageState
from tests.integration.test_actor_pools import SHARDS, STAGE_TASK, label

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_two_labeling_workers_on_one_cpu_run_on_the_stages_task_without_a_wait_warning(tmp_path, caplog) -> None:
    stage = Stage(
        "g00/label",
        label,
        (),
        ("g00/labels",),
        params={"out": "g00/labels", "succeed_on": 1},
        resources=Resources(num_cpus=1, workers=2),
        parallelism=Parallelism.SHARDS,
    )
    caplog.set_level(logging.INFO, logger="orchestrator.engine.ray_executor")
    executor = RayExecutor(num_cpus=1)
    try:
        store = ArtifactStore(str(tmp_path / "store"))
        summary = Runner(store, executor, NullTracker(), "v1", seed=0).run(Pipeline("small", [stage]), "small")
    finally:
        executor.shutdown()
    assert summary.stages["g00/label"].state is StageState.SUCCEEDED
    table = store.load(summary.manifests["g00/label"].outputs["g00/labels"])
    assert table.column("shard").to_pylist() == list(range(SHARDS))
    assert set(table.column("actor").to_pylist()) == {STAGE_TASK}, "the stage's own task labeled every shard"
    assert "will wait until an autoscaler" not in caplog.text, caplog.text
    assert "g00/label: its 2 workers ask for 2 CPU but the cluster has 1 CPU; it runs on its own task" in caplog.text
