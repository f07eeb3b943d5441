"""Images of one split of a sharded dataset by sample id: what a loader worker runs.

A request names sample ids in any order (duplicates allowed); ``ShardRows.read`` maps each to its
shard by the manifest's row counts and to its row group by the shard's footer, reads only the
``image`` column of the row groups it needs, decodes only the requested rows, and returns them in
the order asked. The last few row groups stay cached, because the blocks a reader asks for
usually share row groups with the next request. Nothing here holds more than those groups.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.datasets import codec
from pipelines.datasets.checks import open_shard, shard_read_error
from pipelines.datasets.shards import REIMPORT, DatasetError, DatasetManifest, open_root, shard_schema

CACHED_GROUPS = 4


class ShardRows:
    """Decoded images of ``split`` by sample id; opens shards lazily, once per process.

    Pickles as (uri, manifest, split): a loader worker or a Ray actor reopens the files itself,
    never sharing a file handle or an S3 client across processes.
    """

    def __init__(self, uri: str, manifest: DatasetManifest, split: str) -> None:
        self.uri, self.manifest, self.split = uri, manifest, split
        self.shards = manifest.splits[split].shards
        self.starts = manifest.splits[split].starts()
        self.schema = shard_schema(manifest.encoding, manifest.image_shape)
        self._fs: pafs.FileSystem | None = None
        self._root = ""
        self._files: dict[int, tuple[pq.ParquetFile, np.ndarray]] = {}
        self._groups: OrderedDict[tuple[int, int], pa.Array] = OrderedDict()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "manifest": self.manifest, "split": self.split}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], state["manifest"], state["split"])

    def read(self, ids: np.ndarray) -> np.ndarray:
        """uint8 ``[len(ids), C, H, W]``: the images of ``ids``, in that order."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"{self.split}: sample ids must lie in [0, {len(self)}), got [{ids.min()}, {ids.max()}]")
        out = np.empty((len(ids), *self.manifest.image_shape), dtype=np.uint8)
        shard_of = np.searchsorted(self.starts, ids, side="right") - 1
        for shard in np.unique(shard_of):
            where = np.flatnonzero(shard_of == shard)
            rows = ids[where] - self.starts[shard]
            group_starts = self._open(int(shard))[1]
            group_of = np.searchsorted(group_starts, rows, side="right") - 1
            for group in np.unique(group_of):
                inside = group_of == group
                local = rows[inside] - group_starts[group]
                out[where[inside]] = self._decode(int(shard), int(group), local, int(group_starts[group]))
        return out

    def _decode(self, shard: int, group: int, local: np.ndarray, group_start: int) -> np.ndarray:
        """The rows ``local`` of one row group, decoded; a bad image names its shard and row."""
        column = self._group(shard, group).take(pa.array(local))
        try:
            return codec.decode(column, self.manifest.encoding, self.manifest.image_shape)
        except codec.ImageDecodeError as exc:
            row = group_start + int(local[exc.row])
            raise DatasetError(
                f"{self.shards[shard].path} row {row} (sample_id {int(self.starts[shard]) + row}): {exc.reason}; "
                f"drop that image from the source and {REIMPORT}"
            ) from None

    def _open(self, shard: int) -> tuple[pq.ParquetFile, np.ndarray]:
        """The shard's ParquetFile (size, schema and rows checked) and its row groups' first rows."""
        if shard not in self._files:
            if self._fs is None:
                self._fs, self._root = open_root(self.uri)
            parquet = open_shard(self._fs, self._root, self.shards[shard], self.schema)
            sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
            self._files[shard] = (parquet, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        return self._files[shard]

    def _group(self, shard: int, group: int) -> pa.Array:
        """The ``image`` column of one row group, from the small LRU cache or read now."""
        key = (shard, group)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        parquet = self._open(shard)[0]
        try:
            column = parquet.read_row_group(group, columns=["image"]).column("image").combine_chunks()
        except (OSError, pa.ArrowException) as exc:
            raise shard_read_error(self._fs, self._root, self.shards[shard], exc, f"read row group {group} of") from exc
        self._groups[key] = column
        while len(self._groups) > CACHED_GROUPS:
            self._groups.popitem(last=False)
        return column
