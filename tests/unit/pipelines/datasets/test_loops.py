"""The training loops give the same model from a tensor and from shards: identical batches, identical results.

The unlabeled set is larger than the shard source's buffer, so it streams through loader workers
in blocks, and both sources carry the same window, so the index streams draw the same batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.datasets import shards
from pipelines.datasets.image_source import ShardSource, TensorSource, window_rows
from pipelines.training.fixmatch import FixMatchSettings, train_fixmatch
from pipelines.training.student import StudentSettings, train_student
from tests.unit.pipelines.training.toy import TinyCNN, toy_images

BLOCK, BUFFER_ROWS = 8, 40  # 200 unlabeled rows: 5 windows of 5 blocks


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[TensorSource, ShardSource, torch.Tensor]:
    images, labels = toy_images(240, torch.Generator().manual_seed(0))
    uri = str(tmp_path_factory.mktemp("toy") / "shards")
    chunks = [(images.numpy(), labels.numpy())]
    manifest = shards.write_dataset(uri, ["0", "1"], (1, 8, 8), "png", {"train": chunks}, rows_per_group=16)
    buffer = BUFFER_ROWS * 64
    memory = TensorSource(images, window_rows(buffer, (1, 8, 8), BLOCK), BLOCK)
    return memory, ShardSource(uri, manifest, "train", buffer, workers=1, block=BLOCK), labels


def _strong(images: torch.Tensor) -> torch.Tensor:
    noise = torch.randint(-40, 41, images.shape)  # the global RNG, as RandAugment: a loader must not draw from it
    return (images.int() + noise).clamp(0, 255).to(torch.uint8)


def _fixmatch(source, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    labeled, unlabeled = source.subset(np.arange(16)), source.subset(np.arange(40, 240))
    torch.manual_seed(0)
    settings = FixMatchSettings(steps=12, batch_size=8, unlabeled_ratio=2, lr=0.1, threshold=0.6, ema_decay=0.9)
    model = train_fixmatch(
        TinyCNN(),
        labeled,
        labels[:16],
        unlabeled,
        2,
        settings,
        lambda x: x,
        _strong,
        "cpu",
        torch.Generator().manual_seed(1),
    )
    return model.state_dict()


def test_fixmatch_trains_the_same_model_from_tensors_and_from_streamed_shards(both) -> None:
    memory, sharded, labels = both
    assert isinstance(sharded.subset(np.arange(40, 240)), ShardSource)  # 200 rows > 40: it streams
    expected, got = _fixmatch(memory, labels), _fixmatch(sharded, labels)
    assert all(torch.equal(expected[key], got[key]) for key in expected)


def _student(source, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    picks = np.concatenate([np.arange(40, 240), np.arange(40, 60)])  # duplicates, as Noisy Student's balancing makes
    torch.manual_seed(0)
    settings = StudentSettings(steps=10, batch_size=8, lr=0.1, cutmix_alpha=1.0, pseudo_batch_ratio=2)
    model = train_student(
        TinyCNN(),
        source.subset(np.arange(16)),
        labels[:16],
        2,
        settings,
        _strong,
        "cpu",
        torch.Generator().manual_seed(2),
        pseudo_images=source.subset(picks),
        pseudo_targets=labels[torch.from_numpy(picks)],
    )
    return model.state_dict()


def test_the_student_loop_trains_the_same_model_from_either_source(both) -> None:
    memory, sharded, labels = both
    expected, got = _student(memory, labels), _student(sharded, labels)
    assert all(torch.equal(expected[key], got[key]) for key in expected)
