"""One image interface: a sharded source gives exactly the tensor source's images, within its memory bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.datasets import shards
from pipelines.datasets.image_source import ShardSource, TensorSource, window_rows
from pipelines.training.common import IndexStream, index_stream
from tests.unit.pipelines.datasets.toy import SHAPE, break_image, write_toy

IMAGE_BYTES = int(np.prod(SHAPE))


BLOCK = 4


def sources(path: Path, rows_buffer: int, workers: int = 0, n: int = 100) -> tuple[TensorSource, ShardSource]:
    """The same images as a TensorSource and as a ShardSource whose buffer holds ``rows_buffer`` images (blocks of 4)."""
    manifest, images, _ = write_toy(path, n=n)
    buffer = rows_buffer * IMAGE_BYTES
    memory = TensorSource(torch.from_numpy(images), window_rows(buffer, SHAPE, BLOCK), BLOCK)
    return memory, ShardSource(str(path), manifest, "train", buffer, workers, block=BLOCK)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_subset_that_fits_is_read_once_into_a_tensor_source(tmp_path: Path, workers: int) -> None:
    memory, sharded = sources(tmp_path / "d", rows_buffer=50, workers=workers)
    ids = np.array([90, 3, 3, 47, 12, 48])  # unsorted, duplicated, across shards
    subset = sharded.subset(ids)
    assert isinstance(subset, TensorSource)
    assert torch.equal(subset.images, memory.subset(ids).images)
    assert (subset.window, subset.block) == (memory.window, memory.block)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_larger_subset_streams_the_same_images_in_any_order(tmp_path: Path, workers: int) -> None:
    memory, sharded = sources(tmp_path / "d", rows_buffer=20, workers=workers)
    ids = np.arange(0, 100, 2)[::-1].copy()  # 50 rows > 20: streamed
    streamed, held = sharded.subset(ids), memory.subset(ids)
    assert isinstance(streamed, ShardSource) and len(streamed) == 50
    order = np.random.default_rng(0).permutation(50)
    for start in range(0, 50, 9):
        batch = order[start : start + 9]
        assert torch.equal(streamed.fetch(batch, order[start + 9 :]), held.fetch(batch))
    assert torch.equal(streamed.fetch([5, 5, 0]), held.fetch([5, 5, 0]))  # off the plan: replanned


def test_streaming_holds_at_most_its_cache(tmp_path: Path) -> None:
    _, sharded = sources(tmp_path / "d", rows_buffer=16, workers=0, n=200)
    view = sharded.subset(np.arange(200))
    assert isinstance(view, ShardSource) and (view.window, view.block) == (16, 4)
    stream = index_stream(view, 10, torch.Generator().manual_seed(0))
    most = 0
    for _ in range(60):  # three epochs
        view.fetch(stream.next(), stream.pool)
        most = max(most, len(view._cache))
    assert 0 < most <= view.cache_blocks == 2 * 4 + 0 + 2  # two windows of 4 blocks, no read-ahead, slack


def test_index_stream_is_a_uniform_shuffle_while_the_set_fits_the_window() -> None:
    images = torch.zeros(30, *SHAPE, dtype=torch.uint8)
    fits = index_stream(TensorSource(images, window=30), 7, torch.Generator().manual_seed(3))
    plain = IndexStream(30, 7, torch.Generator().manual_seed(3))
    assert all(torch.equal(fits.next(), plain.next()) for _ in range(20))


def test_a_windowed_epoch_covers_every_item_once_within_windows_of_blocks() -> None:
    stream = IndexStream(103, 5, torch.Generator().manual_seed(1), window=20, block=4)
    epoch = (stream._epoch() // 4).tolist()
    assert sorted(stream._epoch().tolist()) == list(range(103))
    first = {b: epoch.index(b) for b in set(epoch)}
    last = {b: len(epoch) - 1 - epoch[::-1].index(b) for b in set(epoch)}
    live = [sum(first[b] <= t <= last[b] for b in first) for t in range(len(epoch))]
    assert max(live) <= 5  # a block, once started, is finished before more than 5 blocks are open


def test_a_decode_error_in_a_loader_worker_names_the_shard_and_row(tmp_path: Path) -> None:
    manifest, _, _ = write_toy(tmp_path / "d", encoding="png")
    manifest = break_image(tmp_path / "d", manifest, 0, 2)
    source = ShardSource(str(tmp_path / "d"), manifest, "train", 10 * IMAGE_BYTES, workers=1, block=BLOCK)
    with pytest.raises(
        shards.DatasetError, match=r"train/part-00000.parquet row 2 \(sample_id 2\): the image does not decode"
    ):
        source.subset(np.arange(30)).fetch(np.arange(5))


def test_loader_workers_stop_when_a_stage_ends_and_start_again_for_the_next(tmp_path: Path) -> None:
    """Ray ends an idle task worker by killing its children; loader workers left alive after a stage made a
    successful run print "DataLoader worker ... is killed by signal: Killed". They now end with the stage."""
    import multiprocessing

    import pipelines.stages.common  # noqa: F401 (registers the release with every stage's end)
    from orchestrator.dag import stage_ended

    memory, sharded = sources(tmp_path / "d", rows_buffer=20, workers=1)
    ids = np.arange(0, 100, 2)[::-1].copy()
    streamed, held = sharded.subset(ids), memory.subset(ids)
    assert torch.equal(streamed.fetch(np.arange(9), np.arange(9, 50)), held.fetch(np.arange(9)))
    assert multiprocessing.active_children(), "the loader's worker process runs during the stage"
    stage_ended()
    assert multiprocessing.active_children() == []
    assert torch.equal(streamed.fetch(np.arange(40, 50)), held.fetch(np.arange(40, 50)))  # the next stage reads on
    stage_ended()
    assert multiprocessing.active_children() == []
