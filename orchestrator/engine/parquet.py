"""Stage tables on disk: Parquet written as a stream and hashed on the way out, read back as written.

Why a module of its own: the artifact store decides where bytes go and when a stage is
complete; how a table becomes Parquet (per-column encodings, refusing nulls a schema
forbids, the digest computed while writing) is a separate concern with its own
measurements (benchmarks/artifacts.py).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.engine.digests import ALGORITHM, hasher
from orchestrator.errors import ArtifactError


class HashingSink:
    """A write-only file object that hashes and counts bytes on their way to ``stream``.

    Hashing inline, not on a second thread: a hashing thread measured no faster on the shared
    2-core benchmark machine (no idle core to overlap with) and costs a thread per write.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.algorithm = ALGORITHM
        self.digest = hasher(ALGORITHM)
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        self._stream.write(data)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.closed = True  # the caller owns (and closes) the underlying stream

    def writable(self) -> bool:
        return True


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Write options per column: dictionary encoding and statistics only where they pay.

    Why: by default pyarrow dictionary-encodes and keeps min/max statistics for every column, the
    float probabilities included; on a 1M x 10 pseudo-label table that tripled the write time for
    nothing (random-looking floats have no repeats, and nobody filters on a probability). So
    dictionary only on strings (``model``: one value repeated per row), statistics only on
    scalar columns (filters on generation or pred_class can still skip pages), never on the
    floats inside a list column. No compression: the bulk is probabilities, which barely
    compress, and snappy cost more than the bytes it saved on the read side
    (benchmarks/artifacts.py); stage outputs are short-lived intermediates.

    Fixed-size lists stay Parquet lists on disk, so any Parquet reader (pandas, DuckDB,
    ``pq.read_table``, MLflow's dataset schema) sees the contract schema in the file itself; a
    FIXED_LEN_BYTE_ARRAY layout (one plain value per row, no levels) was measured: reads 10x
    faster at C=1000, but writes unchanged (they were dominated by the digest and Parquet's page
    copy) and every other reader would see bytes instead of ``probs``.
    """
    text = _string_columns(schema)
    scalar = [f.name for f in schema if not pa.types.is_nested(f.type)]
    return {"use_dictionary": text, "write_statistics": scalar, "compression": "none"}


def read_parquet(source: Any) -> pa.Table:
    """A stored table as it was written, its strings read as dictionaries and cast back.

    ``model`` is stored dictionary-encoded (one value repeated per row), and Arrow's cast
    expands it faster than the Parquet reader's own decoding (1M rows: 57 -> 34 ms for the
    whole pseudo-label table). ``ParquetFile.read`` decodes each fixed-size list column into
    one chunk across all row groups (``pq.read_table`` keeps one chunk per row group), so
    ``probs_view`` of a streamed, many-row-group table stays zero-copy.
    """
    metadata = pq.read_metadata(source)
    schema = metadata.schema.to_arrow_schema()
    text = _string_columns(schema)
    table = pq.ParquetFile(source, metadata=metadata, read_dictionary=text).read()
    for name in text:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, schema.field(name), table.column(index).cast(schema.field(name).type))
    return table


def _string_columns(schema: pa.Schema) -> list[str]:
    """Top-level string columns: written dictionary-encoded, read as dictionaries and cast back."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def write_parquet(sink: HashingSink, reader: pa.RecordBatchReader, name: str) -> None:
    """Every batch of ``reader`` into one Parquet file with the reader's own schema (the contract on disk)."""
    schema = reader.schema
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, **parquet_options(schema)) as writer:
        for batch in reader:
            _refuse_nulls(batch, name)
            writer.write_batch(batch)


def _refuse_nulls(batch: pa.RecordBatch, name: str) -> None:
    """Refuse nulls in a column declared non-nullable, naming the column, before they are written.

    Arrow declares non-nullable but does not enforce it. Parquet's writer refuses such nulls in a
    scalar column or a list's elements, but with an error that reads like a storage failure (and
    would be retried); a null row of a non-nullable list column it writes silently as whatever
    values lie under the null, so the null is lost.
    """
    for column, field in zip(batch.columns, batch.schema):
        if _holds_nulls(column, field):
            raise ArtifactError(
                name,
                f"column {field.name!r} is declared non-nullable but holds nulls; "
                "fill or drop them, or declare the field nullable",
                retryable=False,
            )


def _holds_nulls(column: pa.Array, field: pa.Field) -> bool:
    """Whether ``column`` or, for a list, its elements hold nulls where ``field`` declares none."""
    if not field.nullable and column.null_count:
        return True
    kind = field.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _holds_nulls(column.flatten(), kind.value_field)  # flatten skips null rows, honours slices
    return False
