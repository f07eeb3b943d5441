"""Pseudo-labels as Arrow tables: the model's softmax over the unlabeled split, one row per sample.

The table schema is a contract between stages (docs/CONTRACTS.md, Pseudo-label schema): sample_id int64, pred_class int32,
confidence float32, probs fixed_size_list<float32>[C], generation int32, model string, all
non-nullable. ``probs`` is a fixed-size list so the whole column is one contiguous float32 buffer
that ``probs_view`` exposes as an ``[N, C]`` NumPy array without copying. The ArtifactStore
writes the table with this schema as is, so any Parquet reader sees the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from pipelines.datasets.image_source import ImageSource, as_source
from pipelines.models import to_float


def pseudo_label_schema(num_classes: int) -> pa.Schema:
    """The pseudo-label table schema for ``num_classes`` classes (every field non-nullable)."""
    if num_classes < 1:
        raise ValueError(f"pseudo_label_schema: expected num_classes >= 1, got {num_classes}")
    return pa.schema(
        [
            pa.field("sample_id", pa.int64(), nullable=False),
            pa.field("pred_class", pa.int32(), nullable=False),
            pa.field("confidence", pa.float32(), nullable=False),
            pa.field("probs", pa.list_(pa.field("element", pa.float32(), nullable=False), num_classes), nullable=False),
            pa.field("generation", pa.int32(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
        ]
    )


def picks_schema() -> pa.Schema:
    """Schema of the rows CReST / Noisy Student add to the labeled set: the sample and its pseudo-label."""
    return pa.schema(
        [
            pa.field("sample_id", pa.int64(), nullable=False),
            pa.field("label", pa.int32(), nullable=False),
            pa.field("confidence", pa.float32(), nullable=False),
            pa.field("generation", pa.int32(), nullable=False),
        ]
    )


def predict_probs(
    model: nn.Module,
    images: torch.Tensor | ImageSource,
    batch_size: int,
    device: str | torch.device,
    temperature: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``softmax(f(x) / T)`` for uint8 images ``[N, C, H, W]`` (a tensor or an ImageSource), as float32 ``[N, num_classes]``.

    Pseudo-labels come from the un-noised model: eval mode (BatchNorm running stats, no dropout),
    clean inputs (``to_float`` only, no augmentation), ``torch.inference_mode``. Images are fetched
    and moved to ``device`` one batch at a time (a sharded source reads ahead in order), so the full
    set never has to fit in memory or on the accelerator. The model's train/eval mode is restored
    afterwards. ``progress(rows done, rows)`` hears of every batch.
    """
    if isinstance(images, torch.Tensor) and (images.dtype != torch.uint8 or images.ndim != 4):
        raise ValueError(f"predict_probs: expected uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    source = as_source(images)
    if batch_size < 1 or temperature <= 0:
        raise ValueError(
            f"predict_probs: expected batch_size >= 1 and temperature > 0, got {batch_size} and {temperature}"
        )
    was_training = model.training
    model.eval()
    chunks: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            rows = len(source)
            order = np.arange(rows)
            for start in range(0, rows, batch_size):
                end = start + batch_size
                batch = to_float(source.fetch(order[start:end], upcoming=order[end:]).to(device, non_blocking=True))
                logits = model(batch).float()
                chunks.append(torch.softmax(logits / temperature, dim=1).cpu().numpy())
                if progress is not None:
                    progress(min(start + batch_size, rows), rows)
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError(
            "predict_probs: got 0 images; expected at least one: the set to evaluate or label is empty "
            "(a test split, a selection or a pool with no image)"
        )
    return np.concatenate(chunks).astype(np.float32, copy=False)


def to_table(sample_ids: Sequence[int] | np.ndarray, probs: np.ndarray, generation: int, model_name: str) -> pa.Table:
    """The pseudo-label table: ``pred_class = argmax probs``, ``confidence = max probs`` per row.

    The probs buffer is handed to Arrow without a copy when it is a C-contiguous float32 array.
    Every column is built from numpy buffers (``_numeric``, ``_repeated_string``), never through
    ``pa.array`` or ``pa.scalar``: those import pandas on their first call (pyarrow checks each
    input for a pandas Series), 0.15-0.25 s of a core in a fresh labeling actor, paid on its
    first shard of every stage call that starts one.
    """
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    ids = np.asarray(sample_ids, dtype=np.int64)
    if probs.ndim != 2 or ids.shape != (probs.shape[0],):
        raise ValueError(
            f"to_table: expected probs [N, C] and N sample ids, got probs {probs.shape} and ids {ids.shape}"
        )
    num_rows, num_classes = probs.shape
    pred = probs.argmax(axis=1).astype(np.int32) if num_rows else np.empty(0, np.int32)
    confidence = probs.max(axis=1) if num_rows else np.empty(0, np.float32)
    schema = pseudo_label_schema(num_classes)
    columns = [
        _numeric(ids),
        _numeric(pred),
        _numeric(confidence.astype(np.float32, copy=False)),
        pa.FixedSizeListArray.from_arrays(_numeric(probs.reshape(-1)), type=schema.field("probs").type),
        _numeric(np.full(num_rows, generation, dtype=np.int32)),
        _repeated_string(model_name, num_rows),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _numeric(values: np.ndarray) -> pa.Array:
    """A null-free Arrow array of ``values``' own type, sharing its buffer (one copy if not contiguous)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _repeated_string(text: str, count: int) -> pa.Array:
    """``count`` copies of ``text`` as an Arrow string array (32-bit offsets, as the schema's ``string``)."""
    raw = text.encode("utf-8")
    if len(raw) * count >= 2**31:
        raise ValueError(f"to_table: {count} rows of model name {text!r} exceed a string column's 2 GiB")
    offsets = np.arange(count + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(raw * count)])


def probs_view(table: pa.Table) -> np.ndarray:
    """The ``probs`` column as a read-only float32 ``[N, C]`` array sharing the Arrow buffer.

    Zero-copy when the column is one chunk (``to_table`` output; ``ArtifactStore.load``, whose
    ``ParquetFile.read`` decodes a list column into one chunk across row groups; ``pq.read_table``
    of a file written as one row group). A multi-chunk column (``pq.read_table`` keeps one chunk
    per row group) is combined first, which copies once.
    """
    column = table.column("probs")
    if not pa.types.is_fixed_size_list(column.type):
        raise ValueError(f"probs_view: expected probs as fixed_size_list<float32>[C], got {column.type}")
    num_classes = column.type.list_size
    chunk = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(chunk, pa.ChunkedArray):  # combine_chunks returns an Array in recent pyarrow; be defensive
        chunk = chunk.chunk(0)
    values = chunk.flatten().to_numpy(zero_copy_only=True)
    return values.reshape(-1, num_classes)


def picks_table(
    sample_ids: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    confidence: Sequence[float] | np.ndarray,
    generation: int,
) -> pa.Table:
    """The picks table (``picks_schema``): samples chosen for the next generation with their pseudo-labels."""
    ids = np.asarray(sample_ids, dtype=np.int64)
    if not (len(ids) == len(labels) == len(confidence)):
        raise ValueError(
            f"picks_table: expected equal lengths, got {len(ids)} ids, {len(labels)} labels, "
            f"{len(confidence)} confidences"
        )
    columns = [
        pa.array(ids, pa.int64()),
        pa.array(np.asarray(labels, dtype=np.int32), pa.int32()),
        pa.array(np.asarray(confidence, dtype=np.float32), pa.float32()),
        pa.array(np.full(len(ids), generation, dtype=np.int32)),
    ]
    return pa.Table.from_arrays(columns, schema=picks_schema())
