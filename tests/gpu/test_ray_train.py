"""Data-parallel training on 1 and 2 GPUs through Ray Train (NCCL): the same steps give the same weights."""

from __future__ import annotations

import pytest

from tests.gpu.cuda import needs_cuda, needs_two_gpus

pytestmark = [pytest.mark.gpu, pytest.mark.integration, needs_cuda, needs_two_gpus, pytest.mark.timeout(900)]

BN_FREE_TOLERANCE = 1e-3


def test_bn_free_model_on_one_and_two_gpus_agrees(tmp_path):
    pytest.importorskip("ray")
    from orchestrator.dag import Pipeline, Resources, Stage
    from orchestrator.engine.executors import RayExecutor
    from pipelines.builders import crest
    from tests.integration.test_data_parallel import linear_fixmatch, max_abs_diff, run, smoke_config, weights

    config = smoke_config()
    split = crest.build(config).stage("data/split")
    params = {"data": config.data, "train": config.train, "crest": config.crest, "augment": config.augment}
    executor = RayExecutor(num_cpus=4)
    results = {}
    try:
        for workers in (1, 2):
            train = Stage(
                "linear/train",
                linear_fixmatch,
                ("data/split",),
                ("linear/model",),
                params=params,
                resources=Resources(num_cpus=1, num_gpus=1, workers=workers),
            )
            store = tmp_path / f"w{workers}"
            summary = run(executor, store, Pipeline("linear", [split, train]))
            results[workers] = (
                summary.manifests["linear/train"].metrics,
                weights(store, summary, "linear/train", "linear/model"),
            )
    finally:
        executor.shutdown()
    (m1, w1), (m2, w2) = results[1], results[2]
    assert m1["steps"] == m2["steps"] == config.train.steps
    assert m1["samples_seen"] == m2["samples_seen"]
    assert max_abs_diff(w1, w2) < BN_FREE_TOLERANCE
