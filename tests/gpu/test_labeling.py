"""Pseudo-labeling on CUDA: in one process, and on two actors sharing one GPU (the same table)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from tests.gpu.cuda import needs_cuda

pytestmark = [pytest.mark.gpu, needs_cuda]

ROWS = 2000
SHARD = 256


def labeler(device: str):
    from pipelines.data import load_dataset
    from pipelines.models import create_model
    from pipelines.schema import DataSection
    from pipelines.stages.common import model_checkpoint
    from pipelines.stages.pseudo_label import ShardLabeler

    torch.manual_seed(0)
    checkpoint = model_checkpoint(create_model("small_cnn", 10, 1), "small_cnn", 10, 1, 0.0)
    labels = load_dataset("synthetic", None).train.labels.numpy()
    ids = np.arange(ROWS, dtype=np.int64) % len(labels)
    shards = [(ids[i : i + SHARD], labels[ids[i : i + SHARD]]) for i in range(0, ROWS, SHARD)]
    return ShardLabeler(DataSection(name="synthetic"), checkpoint, 128, 0, "small_cnn@g00", device), shards


def table(results) -> pa.Table:
    return pa.Table.from_batches([batch for batch, _, _ in results])


def test_labels_on_cuda_match_labels_on_cpu():
    pytest.importorskip("pydantic")
    on_gpu, shards = labeler("cuda")
    on_cpu, _ = labeler("cpu")
    gpu, cpu = table(map(on_gpu, shards)), table(map(on_cpu, shards))
    assert gpu.num_rows == cpu.num_rows == ROWS
    assert gpu.column("sample_id").equals(cpu.column("sample_id"))
    agree = np.mean(gpu.column("pred_class").to_numpy() == cpu.column("pred_class").to_numpy())
    assert agree >= 0.99
    from pipelines.pseudo_label import probs_view

    np.testing.assert_allclose(probs_view(gpu), probs_view(cpu), atol=1e-3)


def test_two_actors_sharing_one_gpu_label_exactly_like_one_process():
    ray = pytest.importorskip("ray")
    from orchestrator.dag import Resources
    from orchestrator.engine.actor_pool import ActorPool

    label, shards = labeler("cuda")
    expected = table(map(label, shards))
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        pool = ActorPool.start(Resources(num_cpus=1, num_gpus=0.5, workers=2))
        got = table(pool.mapper()(label, shards))
        again = table(pool.mapper(local=True)(label, shards))  # warm, with this process as a worker (a stage's task)
        pool.shutdown()
    finally:
        ray.shutdown()
    assert got.column("sample_id").equals(expected.column("sample_id"))
    assert got.column("pred_class").equals(expected.column("pred_class"))
    from pipelines.pseudo_label import probs_view

    np.testing.assert_allclose(probs_view(got), probs_view(expected), atol=1e-6)
    assert again.equals(got)
