"""Stages that declare the run's seed does not determine their outputs (``Stage.seeded`` False: a data split).

Why: every stage's fingerprint held the run seed, so a sweep over `seed` drew the same data split again in
every run (6-11 s each, the same digest for seeds 0, 1 and 2).
"""

import dataclasses

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.engine.runner import Runner, StageState
from tests.unit.orchestrator.engine.toy import CALLS, RecordingTracker, random_draw, toy

# toy()'s stages fingerprinted with seed 3 by the formula every store's caches were written under: a seeded
# stage must keep exactly these, or every cache in every workspace would be recomputed.
CACHED_BEFORE = {
    "data": "249341c66280ec34284a64e55df163f30c9c4e163211ad59cbc10edd8517fe95",
    "g00/train": "e2a1237ef6e469253e558e92c654e3226bf027e2cb34ca78185098067684fc65",
}


def run_in(store_dir, pipeline, seed, run_id):
    runner = Runner(ArtifactStore(str(store_dir)), LocalExecutor(), RecordingTracker(), code_version="v1", seed=seed)
    return runner.run(pipeline, run_id)


def unseeded_data(pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with its `data` stage declared unseeded."""
    return Pipeline(
        pipeline.name, [dataclasses.replace(s, seeded=False) if s.name == "data" else s for s in pipeline.stages]
    )


def test_a_seeded_stage_fingerprints_exactly_as_before():
    pipeline = toy()
    assert all(stage.seeded for stage in pipeline.stages)  # seeded unless declared otherwise
    assert fingerprint(pipeline.stage("data"), {}, "v1", seed=3) == CACHED_BEFORE["data"]
    assert fingerprint(pipeline.stage("g00/train"), {"data": "d1"}, "v1", seed=3) == CACHED_BEFORE["g00/train"]


def test_an_unseeded_stage_fingerprint_leaves_the_seed_out_and_nothing_else():
    seeded = toy().stage("data")
    unseeded = dataclasses.replace(seeded, seeded=False)
    assert len({fingerprint(unseeded, {}, "v1", seed=s) for s in (0, 1, 2)}) == 1
    assert fingerprint(unseeded, {}, "v1") != fingerprint(seeded, {}, "v1")
    other_params = dataclasses.replace(unseeded, params={"rows": 5, "scale": 1.0})
    assert fingerprint(other_params, {}, "v1") != fingerprint(unseeded, {}, "v1")


def test_another_seed_reuses_an_unseeded_stage_and_reruns_the_seeded_ones(tmp_path):
    pipeline = unseeded_data(toy())
    run_in(tmp_path, pipeline, 0, "run-1")
    CALLS.clear()
    second = run_in(tmp_path, pipeline, 1, "run-2")
    assert second.names(StageState.CACHED) == ["data"]
    assert CALLS == ["g00/train", "g00/evaluate"]


def test_an_unseeded_stage_draws_the_same_whatever_the_run_seed(tmp_path):
    """Its cached outputs stand for every seed, so a recomputation under another seed must give the same."""
    draw = Stage("draw", random_draw, (), ("draw",))
    outputs = {}
    for seeded in (True, False):
        stage = dataclasses.replace(draw, seeded=seeded)
        for seed in (0, 7):
            summary = run_in(tmp_path / f"{seeded}-{seed}", Pipeline("p", [stage]), seed, f"run-{seed}")
            outputs[seeded, seed] = ArtifactStore(str(tmp_path / f"{seeded}-{seed}")).load(
                summary.manifests["draw"].outputs["draw"]
            )
    assert outputs[False, 0]["seed"] == outputs[False, 7]["seed"]
    assert outputs[False, 0]["x"].tolist() == outputs[False, 7]["x"].tolist()
    assert outputs[True, 0]["seed"] != outputs[True, 7]["seed"]
