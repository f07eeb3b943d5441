"""Data-parallel training on 1 and 2 GPUs through Ray Train (NCCL): the same steps give the same weights."""

from __future__ import annotations

import pytest

from tests.gpu.cuda import needs_cuda, needs_two_gpus

pytestmark = [pytest.mark.gpu, pytest.mark.integration, needs_cuda, needs_two_gpus, pytest.mark.timeout(900)]

BN_FREE_TOLERANCE = 1e-3


def test_bn_free_model_on_one_and_two_gpus_agrees(tmp_path):
    pytest.importorskip("ray")
    from orchestrator.engine.ray_executor import RayExecutor
    from tests.integration.test_data_parallel import bn_free_runs, max_abs_diff

    executor = RayExecutor(num_cpus=4)
    try:
        config, results = bn_free_runs(executor, tmp_path, num_gpus=1.0)
    finally:
        executor.shutdown()
    (m1, w1), (m2, w2) = results[1], results[2]
    assert m1["steps"] == m2["steps"] == config.train.steps
    assert m1["samples_seen"] == m2["samples_seen"]
    assert max_abs_diff(w1, w2) < BN_FREE_TOLERANCE
