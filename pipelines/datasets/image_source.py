"""One interface for images, whether they sit in a tensor or in Parquet shards on any storage.

Training, labeling and evaluation read images only through an ``ImageSource``: ``len``, the image
shape, ``fetch(positions)`` -> uint8 ``[n, C, H, W]`` in the order asked, and ``subset(positions)``.
``TensorSource`` is today's in-memory path (a fetch is one tensor index). ``ShardSource`` reads a
split of a sharded dataset (``pipelines.datasets.shards``) on demand:

- a subset whose decoded images fit in ``buffer_bytes`` is read once (only its rows) and becomes
  a TensorSource: labeled sets, test sets and labeling shards are small next to the unlabeled pool;
- a larger one streams in blocks of ``block`` consecutive positions, decoded by torch DataLoader
  workers that read ahead along the order the caller says it will ask in (``upcoming``), with at
  most ``cache_blocks`` decoded blocks held. Memory is bounded by the buffer, not by the dataset.

Why torch DataLoader workers and not Ray Data: stage bodies never import Ray, so the same body runs
in a plain process, a Ray task, a Ray Train worker or a labeling actor, and a loader worker is just
a subprocess of whichever of those runs it (docs/DATA.md).

``window`` is the sampling side of the same bound: the training loops' index streams shuffle
uniformly over a set of at most ``window`` rows, and over blocks within windows of ``window``
rows beyond that (``training.common.IndexStream``). Both sources carry the same ``window`` for the
same data section, so the batches, and the results, do not depend on which one fed the loop.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipelines.datasets.rows import ShardRows
from pipelines.datasets.shards import DatasetError, DatasetManifest, rows_per_group_for

PREFETCH_PER_WORKER = 2


class ImageSource(Protocol):
    """uint8 images by position (docs/DATA.md)."""

    image_shape: tuple[int, int, int]
    window: int  # rows the index streams shuffle over uniformly; 0: no bound
    block: int  # consecutive positions a streamed shuffle keeps together (shuffle_block of the image shape)

    def __len__(self) -> int: ...

    def fetch(self, positions: Any, upcoming: Any = None) -> torch.Tensor: ...

    def subset(self, positions: Any) -> ImageSource: ...


def as_index(positions: Any) -> np.ndarray:
    """Positions (a tensor, array or sequence of ints) as a writable int64 NumPy array (Arrow's are read-only)."""
    if isinstance(positions, torch.Tensor):
        return positions.detach().cpu().numpy().astype(np.int64, copy=False)
    index = np.asarray(positions, dtype=np.int64)
    return index if index.flags.writeable else index.copy()


def shuffle_block(image_shape: Sequence[int]) -> int:
    """Positions per block of a streamed shuffle: one row group of the shard format, from the image size alone."""
    return rows_per_group_for(image_shape)


def window_rows(buffer_bytes: int, image_shape: Sequence[int], block: int | None = None) -> int:
    """Rows whose decoded images fit in ``buffer_bytes`` (at least one block)."""
    return max(block or shuffle_block(image_shape), int(buffer_bytes) // int(np.prod(image_shape)))


class TensorSource:
    """Images held in one uint8 tensor ``[N, C, H, W]``: a fetch is an index, as fast as indexing itself."""

    def __init__(self, images: torch.Tensor, window: int = 0, block: int | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"TensorSource: expected uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images
        self.image_shape = tuple(int(v) for v in images.shape[1:])
        self.window, self.block = int(window), block or shuffle_block(self.image_shape)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def fetch(self, positions: Any, upcoming: Any = None) -> torch.Tensor:
        if isinstance(positions, torch.Tensor):
            return self.images[positions]
        return self.images[torch.from_numpy(as_index(positions))]

    def subset(self, positions: Any) -> TensorSource:
        return TensorSource(self.fetch(positions), self.window, self.block)


def as_source(images: torch.Tensor | ImageSource) -> ImageSource:
    """A tensor wrapped as a TensorSource (no bound on the shuffle); a source as it is."""
    return TensorSource(images) if isinstance(images, torch.Tensor) else images


class _Requests(torch.utils.data.Dataset):
    """What a loader worker runs: (key, sample ids) -> (key, decoded uint8 tensor), or the DatasetError to raise."""

    def __init__(self, rows: ShardRows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, request: tuple[int, np.ndarray]) -> tuple[int, Any]:
        key, ids = request
        try:
            return key, torch.from_numpy(self.rows.read(ids))
        except DatasetError as exc:  # raised in the caller with its own message, not as a worker traceback
            return key, exc


class _Plan:
    """The requests a loader works through, in order; replaced whenever the caller's order changes."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, np.ndarray]] = []

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return iter(self.requests)

    def __len__(self) -> int:
        return len(self.requests)


class BlockLoader:
    """Decoded blocks of sample ids from loader workers, in the order of the current plan.

    ``workers`` 0 decodes in the calling process (same code path, no read-ahead).
    Workers persist across the plans of a stage: a new plan costs no process start. They stop
    when the stage ends (``release_loader_workers``) and start again for the next stage.
    """

    def __init__(self, rows: ShardRows, workers: int) -> None:
        self._plan = _Plan()
        self._rows, self._workers = rows, workers
        self._loader = self._new_loader()
        self._iterator: Iterator[tuple[int, Any]] | None = None

    def _new_loader(self) -> DataLoader:
        workers = self._workers
        return DataLoader(
            _Requests(self._rows),
            batch_size=None,
            sampler=self._plan,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=PREFETCH_PER_WORKER if workers > 0 else None,
            generator=torch.Generator(),  # its own: a new iteration must not draw from the global RNG augmentations use
        )

    def start(self, requests: list[tuple[int, np.ndarray]]) -> None:
        """Work through ``requests`` from now on (what the previous plan had in flight is dropped)."""
        self._plan.requests = requests
        self._iterator = iter(self._loader)

    def stop_workers(self) -> None:
        """End the loader's worker processes; the next ``start`` begins new ones.

        The persistent iterator shuts its workers down when the last reference to it goes (CPython
        frees it at once), so dropping this loader and our iterator is the whole of it.
        """
        if self._workers > 0:
            self._iterator = None
            self._loader = self._new_loader()

    def next(self) -> tuple[int, torch.Tensor] | None:
        """The next decoded block of the plan, or None when the plan is done."""
        if self._iterator is None:
            return None
        try:
            key, images = next(self._iterator)
        except StopIteration:
            self._iterator = None
            return None
        if isinstance(images, DatasetError):
            raise images
        return int(key), images


_SOURCES: weakref.WeakSet[ShardSource] = weakref.WeakSet()


def release_loader_workers() -> None:
    """Stop every source's loader workers; the stages call it when each stage ends (``orchestrator.dag.on_stage_end``
    says why, and pipelines/stages/common.py registers it)."""
    for source in list(_SOURCES):
        source.stop_loader()


class ShardSource:
    """Images of one split of a sharded dataset, or of a subset of it (``ids``: position -> sample id).

    ``buffer_bytes`` bounds the decoded images this source keeps: a subset that fits is read into
    a TensorSource through this source's loader (whose workers start once per stage and stop when
    it ends: ``release_loader_workers``); a larger one becomes a streamed view with a loader of its own (see
    the module docstring). ``block`` defaults to ``shuffle_block`` of the image shape.
    """

    def __init__(
        self,
        uri: str,
        manifest: DatasetManifest,
        split: str,
        buffer_bytes: int,
        workers: int = 1,
        ids: np.ndarray | None = None,
        block: int | None = None,
    ) -> None:
        self.uri, self.manifest, self.split = uri, manifest, split
        self.rows = ShardRows(uri, manifest, split)
        self.image_shape = tuple(manifest.image_shape)
        self.buffer_bytes, self.workers = int(buffer_bytes), int(workers)
        self.block = block or shuffle_block(self.image_shape)
        self.window = window_rows(self.buffer_bytes, self.image_shape, self.block)
        self.ids = ids
        self._loader: BlockLoader | None = None
        self.cache_blocks = 2 * -(-self.window // self.block) + workers * PREFETCH_PER_WORKER + 2
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._planned: set[int] = set()
        _SOURCES.add(self)

    def stop_loader(self) -> None:
        """End the loader's worker processes; what they had not delivered is planned again on the next fetch."""
        if self._loader is not None:
            self._loader.stop_workers()
        self._planned = set()

    def __len__(self) -> int:
        return len(self.rows) if self.ids is None else len(self.ids)

    def _sample_ids(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.ids is None else self.ids[positions]

    def loader(self) -> BlockLoader:
        """This source's loader, started on first use."""
        if self._loader is None:
            self._loader = BlockLoader(self.rows, self.workers)
        return self._loader

    def subset(self, positions: Any) -> ImageSource:
        """The images at ``positions``: read now into a TensorSource when they fit the buffer, else a streamed view."""
        ids = self._sample_ids(as_index(positions))
        if len(ids) * self.manifest.image_bytes <= self.buffer_bytes:
            return TensorSource(self.read_all(ids), self.window, self.block)
        return ShardSource(self.uri, self.manifest, self.split, self.buffer_bytes, self.workers, ids, self.block)

    def read_all(self, ids: np.ndarray) -> torch.Tensor:
        """The images of ``ids`` in one tensor, read in sample-id order through the loader (each row once)."""
        unique, inverse = np.unique(ids, return_inverse=True)
        out = torch.empty((len(unique), *self.image_shape), dtype=torch.uint8)
        loader = self.loader()
        loader.start([(start, unique[start : start + self.block]) for start in range(0, len(unique), self.block)])
        while (item := loader.next()) is not None:
            start, images = item
            out[start : start + len(images)] = images
        return out[torch.from_numpy(inverse.reshape(-1))]

    def fetch(self, positions: Any, upcoming: Any = None) -> torch.Tensor:
        """The images at ``positions``; ``upcoming`` (the positions the caller will ask next) steers read-ahead."""
        positions = as_index(positions)
        blocks = positions // self.block
        needed = np.unique(blocks)
        if any(int(b) not in self._cache and int(b) not in self._planned for b in needed):
            self._replan(positions, upcoming)
        out = torch.empty((len(positions), *self.image_shape), dtype=torch.uint8)
        for block in needed.tolist():
            images = self._block(block)
            inside = np.flatnonzero(blocks == block)
            out[torch.from_numpy(inside)] = images[torch.from_numpy(positions[inside] - block * self.block)]
        return out

    def _replan(self, positions: np.ndarray, upcoming: Any) -> None:
        """Ask the loader for the blocks of ``positions`` then ``upcoming``, in order of first need."""
        ahead = positions if upcoming is None else np.concatenate([positions, as_index(upcoming)])
        blocks, first = np.unique(ahead // self.block, return_index=True)
        order = blocks[np.argsort(first, kind="stable")]
        order = [int(b) for b in order if int(b) not in self._cache]
        self._planned = set(order)
        size = len(self)
        requests = [(b, self._sample_ids(np.arange(b * self.block, min((b + 1) * self.block, size)))) for b in order]
        self.loader().start(requests)

    def _block(self, block: int) -> torch.Tensor:
        """One decoded block: from the cache, or pulled from the loader (caching what arrives before it)."""
        if block in self._cache:
            self._cache.move_to_end(block)
            return self._cache[block]
        while (item := self.loader().next()) is not None:
            key, images = item
            self._planned.discard(key)
            self._cache[key] = images
            while len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
            if key == block:
                return images
        raise RuntimeError(f"{self.split}: block {block} was planned but never arrived from the loader")
