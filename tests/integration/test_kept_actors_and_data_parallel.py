"""A run's kept labeling actor against another run's work, when the stage that waits is data-parallel.

On a real local Ray of 3 CPUs: a labeling stage of 2 workers (its task and one actor, kept for the
run), then ``g01/train`` on 2 Ray Train workers of 1 CPU each; another run's actor holds the third
CPU. The train stage's own task is Ray Train's coordinator and asks for nothing, so Ray places it at
once; its worker group is what waits, for the CPU the kept actor holds. The run used to read its
stage as placed, kept its actor, and Ray Train retried its worker group for good; it must let the
actor go and finish. For the same reason a data-parallel stage whose workers found no room was
never said to wait; it must be, by name.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage, StageResult
from orchestrator.engine import placement_warnings, ray_executor
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner, StageState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def same_shard(shard: int) -> int:
    return shard


def label(ctx, inputs, params):
    """A sharded stage: its task and its (kept) actor label 4 shards."""
    return StageResult(outputs={"g00/labels": pa.table({"shard": list(ctx.map_shards(same_shard, range(4)))})})


def train(ctx, inputs, params):
    """A data-parallel stage: each Ray Train worker runs it; rank 0's outputs are stored."""
    return StageResult(outputs={"g01/model": pa.table({"world_size": [ctx.world_size]})})


def train_on_two_workers(inputs: tuple[str, ...]) -> Stage:
    return Stage("g01/train", train, inputs, ("g01/model",), resources=Resources(num_cpus=1, workers=2))


def label_then_train_on_two_workers() -> Pipeline:
    label_stage = Stage(
        "g00/pseudo_label",
        label,
        (),
        ("g00/labels",),
        resources=Resources(num_cpus=1, workers=2),
        parallelism=Parallelism.SHARDS,
    )
    return Pipeline("dp-after-kept", [label_stage, train_on_two_workers(("g00/labels",))])


class _Holder:
    def ready(self) -> bool:
        return True


def test_kept_actors_let_go_when_a_data_parallel_stage_cannot_place_its_workers(tmp_path, caplog, monkeypatch):
    import ray

    monkeypatch.setattr(ray_executor, "KEPT_YIELD_S", 2.0)
    monkeypatch.setattr(ray_executor, "REFIT_EVERY_S", 1.0)
    caplog.set_level(logging.INFO, logger="orchestrator.engine")
    pipeline = label_then_train_on_two_workers()
    executor = RayExecutor(num_cpus=3)
    other_run = ray.remote(_Holder).options(num_cpus=1, name="another run's kept actor").remote()
    try:
        ray.get(other_run.ready.remote())
        executor.warm_up(pipeline)
        store = ArtifactStore(str(tmp_path / "store"))
        summary = Runner(store, executor, NullTracker(), "v1", seed=0).run(pipeline, "dp-after-kept")
        let_go = executor._actors._kept_let_go
    finally:
        del other_run
        executor.shutdown()
    assert "labeling actors: kept for the run" in caplog.text
    assert summary.names(StageState.SUCCEEDED) == ["g00/pseudo_label", "g01/train"]
    assert store.load(summary.manifests["g01/train"].outputs["g01/model"])["world_size"].to_pylist() == [2]
    assert let_go, "the run kept its idle labeling actor while its data-parallel stage waited for it"
    assert "g01/train waited" in caplog.text and "Letting them go" in caplog.text


def test_a_data_parallel_stage_whose_workers_find_no_room_is_said_to_wait(tmp_path, monkeypatch):
    """No kept actors (no warm-up), 2 CPUs, another run's actor holds one: g01/train's 2 workers wait.

    The other run lets its CPU go only once the run says which stage waits, so the run finishes
    only if ``g01/train`` is said to wait.
    """
    import ray

    monkeypatch.setattr(placement_warnings, "WAITING_WARN_S", 1.0)
    monkeypatch.setattr(ray_executor, "REFIT_EVERY_S", 1.0)
    said: list[str] = []
    executor = RayExecutor(num_cpus=2)
    other_run = ray.remote(_Holder).options(num_cpus=1, name="another run's actor").remote()

    def other_run_yields_once_told(record: logging.LogRecord) -> bool:
        if "has waited" in record.getMessage():
            said.append(record.getMessage())
            ray.kill(other_run)
        return True

    logger = logging.getLogger(ray_executor.__name__)
    logger.addFilter(other_run_yields_once_told)
    try:
        ray.get(other_run.ready.remote())
        store = ArtifactStore(str(tmp_path / "store"))
        only_train = Pipeline("dp-waits", [train_on_two_workers(())])
        summary = Runner(store, executor, NullTracker(), "v1", seed=0).run(only_train, "dp-waits")
    finally:
        logger.removeFilter(other_run_yields_once_told)
        executor.shutdown()
    assert summary.names(StageState.SUCCEEDED) == ["g01/train"]
    assert said and said[0].startswith("g01/train has waited")
