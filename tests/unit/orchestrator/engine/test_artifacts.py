"""Artifact store: explicit schemas, weights-only checkpoints, atomic writes, digests."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from orchestrator.dag import StageResult
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore, train_run_name
from orchestrator.errors import ArtifactError
from orchestrator.names import sanitize

SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("probs", pa.list_(pa.float32(), 3), nullable=False),
        pa.field("model", pa.string(), nullable=False),
    ]
)


def table():
    probs = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)
    return pa.Table.from_arrays([pa.array([7, 9], pa.int64()), probs, pa.array(["m", "m"])], schema=SCHEMA)


def checkpoint():
    return {"state": {"w": torch.arange(4.0), "b": torch.zeros(2)}, "step": 12, "name": "small_cnn", "dims": [1, 2]}


def result(**outputs):
    return StageResult(
        outputs=outputs or {"g00/picks": table(), "model": checkpoint()},
        metrics={"acc": 0.5},
        files={"confusion.png": b"\x89PNG fake"},
    )


@pytest.fixture(params=["path", "uri"])
def store(request, tmp_path):
    root = tmp_path / "store"
    return ArtifactStore(str(root) if request.param == "path" else root.as_uri())


class SpyFS:
    """Delegates to a real pyarrow filesystem except for the methods given (pyarrow's are read-only)."""

    def __init__(self, fs, **overrides):
        self._fs, self._overrides = fs, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._fs, name)


def test_round_trip_keeps_schema_and_weights_only_checkpoint(store):
    manifest = store.write_stage("fp1", "g00/rebalance", result(), series=[(1, {"loss": 2.0})])
    picks = store.load(manifest.outputs["g00/picks"])
    assert picks.schema.equals(SCHEMA)
    assert picks.equals(table())
    ckpt = store.load(manifest.outputs["model"])
    assert torch.equal(ckpt["state"]["w"], torch.arange(4.0))
    assert ckpt["step"] == 12 and ckpt["name"] == "small_cnn" and ckpt["dims"] == [1, 2]
    assert manifest.outputs["g00/picks"].path == "stages/fp1/g00_picks.parquet"
    assert manifest.outputs["model"].kind == "checkpoint"


def test_manifest_reads_back_equal(store):
    written = store.write_stage("fp1", "s", result(), series=[(1, {"loss": 2.0}), (2, {"loss": 1.0})])
    read = store.read_manifest("fp1")
    assert read == written
    assert read.series == [(1, {"loss": 2.0}), (2, {"loss": 1.0})]
    assert read.metrics == {"acc": 0.5}
    assert len(read.outputs["model"].digest) == 32 and read.outputs["model"].algorithm == "xxh3_128"


def test_missing_manifest_is_none(store):
    assert store.read_manifest("never-written") is None


def test_files_are_stored_and_locally_readable(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("fp", "s", result())
    path = manifest.files["confusion.png"]
    assert store.read_bytes(path) == b"\x89PNG fake"
    assert store.local_path(path).read_bytes() == b"\x89PNG fake"


def test_write_is_atomic_and_manifest_last_when_an_output_fails(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError) as info:
        store.write_stage("fp", "s", StageResult(outputs={"good": table(), "bad": object()}))
    assert info.value.artifact == "bad"
    assert info.value.retryable is False
    assert store.read_manifest("fp") is None
    stage_dir = tmp_path / "stages" / "fp"
    assert (stage_dir / "good.parquet").exists()  # first output landed, but without a manifest it is not "complete"
    assert not list(stage_dir.glob("*.tmp-*"))


def test_storage_failure_after_first_file_leaves_no_manifest(tmp_path, monkeypatch):
    store = ArtifactStore(str(tmp_path))
    store.write_stage("fp", "s", result())  # an earlier complete write
    real = store._fs.open_output_stream
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store, "_fs", SpyFS(store._fs, open_output_stream=failing))
    with pytest.raises(ArtifactError, match="'model': could not write .*disk full"):
        store.write_stage("fp", "s", result())
    assert store.read_manifest("fp") is None  # the old manifest went first
    assert not list((tmp_path / "stages" / "fp").glob("*.tmp-*"))


def test_rejects_values_weights_only_load_cannot_read(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError, match=r"model.state.w is a ndarray"):
        store.write_stage("fp", "s", StageResult(outputs={"model": {"state": {"w": np.zeros(2)}}}))
    with pytest.raises(ArtifactError, match="unsupported output type list"):
        store.write_stage("fp", "s", StageResult(outputs={"x": [1, 2]}))
    with pytest.raises(ArtifactError, match="files must be bytes"):
        store.write_stage("fp", "s", StageResult(outputs={}, files={"a.txt": "text"}))


def test_verify_detects_truncated_corrupted_and_missing_files(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("fp", "s", StageResult(outputs={"a": table(), "b": checkpoint(), "c": table()}))
    assert store.verify(manifest) == []
    stage_dir = tmp_path / "stages" / "fp"
    data = (stage_dir / "a.parquet").read_bytes()
    (stage_dir / "a.parquet").write_bytes(data[:-10])  # truncated
    blob = bytearray((stage_dir / "b.pt").read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one byte flipped
    (stage_dir / "b.pt").write_bytes(bytes(blob))
    assert store.verify(manifest) == ["a", "b"]
    (stage_dir / "c.parquet").unlink()
    assert store.verify(manifest) == ["a", "b", "c"]


def test_verify_checks_the_stages_files_too(tmp_path):
    """A cache hit hands a stage's files (plots) to MLflow: a deleted or changed one must make it recompute."""
    store = ArtifactStore(str(tmp_path))
    files = {"plots/confusion.png": b"png" * 100, "picks.csv": b"a,b\n1,2\n"}
    manifest = store.write_stage("fp", "s", StageResult(outputs={"a": table()}, files=files))
    assert store.verify(manifest) == [] and store.verify(store.read_manifest("fp")) == []
    files_dir = tmp_path / "stages" / "fp" / "files"
    (files_dir / "plots_confusion.png").unlink()
    (files_dir / "picks.csv").write_bytes(b"a,b\n1,3\n")  # same size, other content
    assert sorted(store.verify(store.read_manifest("fp"))) == ["picks.csv", "plots/confusion.png"]


def test_a_manifest_from_before_file_digests_checks_its_files_are_there(tmp_path):
    store = ArtifactStore(str(tmp_path))
    store.write_stage("fp", "s", StageResult(outputs={}, files={"a.txt": b"x"}))
    path = tmp_path / "stages" / "fp" / "manifest.json"
    data = json.loads(path.read_text())
    del data["file_digests"]
    path.write_text(json.dumps(data))
    assert store.verify(store.read_manifest("fp")) == []
    (tmp_path / "stages" / "fp" / "files" / "a.txt").unlink()
    assert store.verify(store.read_manifest("fp")) == ["a.txt"]


def test_a_manifest_from_before_digests_named_their_algorithm_still_verifies_as_sha256(tmp_path):
    """Stores written by earlier versions (sha256, no "algorithm" key) stay cache hits; an unknown algorithm fails."""
    import hashlib

    store = ArtifactStore(str(tmp_path))
    store.write_stage("fp", "s", StageResult(outputs={"a": table(), "b": checkpoint()}))
    path = tmp_path / "stages" / "fp" / "manifest.json"
    data = json.loads(path.read_text())
    for ref in data["outputs"].values():
        del ref["algorithm"]
        ref["digest"] = hashlib.sha256((tmp_path / ref["path"]).read_bytes()).hexdigest()
    path.write_text(json.dumps(data))
    legacy = store.read_manifest("fp")
    assert {ref.algorithm for ref in legacy.outputs.values()} == {"sha256"}
    assert store.verify(legacy) == []
    data["outputs"]["a"]["algorithm"] = "blake9"
    path.write_text(json.dumps(data))
    assert store.verify(store.read_manifest("fp")) == ["a"]


def test_load_wraps_storage_errors_once_with_the_artifact_name(tmp_path):
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("fp", "s", StageResult(outputs={"model": checkpoint()}))
    (tmp_path / "stages" / "fp" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="artifact 'model': could not load") as info:
        store.load(manifest.outputs["model"])
    assert info.value.__cause__ is not None
    assert not isinstance(info.value.__cause__, ArtifactError)


def test_unreadable_manifest_counts_as_incomplete(tmp_path):
    store = ArtifactStore(str(tmp_path))
    store.write_stage("fp", "s", result())
    (tmp_path / "stages" / "fp" / "manifest.json").write_text("{not json")
    assert store.read_manifest("fp") is None


def test_manifest_json_is_written_last(tmp_path, monkeypatch):
    store = ArtifactStore(str(tmp_path))
    order = []
    real = store._fs.move
    spy = SpyFS(store._fs, move=lambda src, dst: (order.append(dst.rsplit("/", 1)[1]), real(src, dst)))
    monkeypatch.setattr(store, "_fs", spy)
    store.write_stage("fp", "s", result())
    assert order[-1] == "manifest.json"
    assert sorted(order[:-1]) == ["confusion.png", "g00_picks.parquet", "model.pt"]
    assert json.loads((tmp_path / "stages" / "fp" / "manifest.json").read_text())["stage"] == "s"


def test_sanitize_keeps_names_file_safe():
    assert sanitize("g00/pseudo labels") == "g00_pseudo_labels"
    assert sanitize("../..") == "artifact"


def test_a_record_batch_reader_is_streamed_with_a_digest_of_the_stored_bytes(tmp_path):
    import pyarrow.parquet as pq
    import xxhash

    schema = pa.schema([pa.field("v", pa.int64(), nullable=False)])
    batches = (pa.record_batch([pa.array(np.arange(i * 10, i * 10 + 10))], schema=schema) for i in range(5))
    metrics: dict[str, float] = {}

    def counted():
        yield from batches
        metrics["rows"] = 50.0  # filled while the output is written: the manifest still sees it

    store = ArtifactStore(str(tmp_path))
    reader = pa.RecordBatchReader.from_batches(schema, counted())
    manifest = store.write_stage("fp", "s", StageResult(outputs={"t": reader}, metrics=metrics))
    ref = manifest.outputs["t"]
    data = (tmp_path / ref.path).read_bytes()
    assert ref.kind == "table" and ref.size == len(data) and ref.digest == xxhash.xxh3_128(data).hexdigest()
    assert store.verify(manifest) == [] and manifest.metrics == {"rows": 50.0}
    assert store.load(ref).column("v").to_pylist() == list(range(50))
    assert pq.ParquetFile(tmp_path / ref.path).num_row_groups == 5


def test_a_failing_reader_leaves_no_output_behind(tmp_path):
    schema = pa.schema([pa.field("v", pa.int64())])

    def broken():
        yield pa.record_batch([pa.array([1])], schema=schema)
        raise RuntimeError("shard 2 failed")

    store = ArtifactStore(str(tmp_path))
    with pytest.raises(RuntimeError, match="shard 2 failed"):
        store.write_stage("fp", "s", StageResult(outputs={"t": pa.RecordBatchReader.from_batches(schema, broken())}))
    assert store.read_manifest("fp") is None
    assert not list((tmp_path / "stages" / "fp").glob("t.parquet*"))


def test_store_checkpointer_round_trip_and_clear(tmp_path):
    from orchestrator.engine.checkpoints import StoreCheckpointer

    store = ArtifactStore(str(tmp_path))
    checkpointer = StoreCheckpointer(store, "fp")
    assert checkpointer.load() is None
    checkpointer.save({"step": 20, "w": torch.ones(2), "pools": [torch.arange(3)]}, 20)
    loaded = checkpointer.load()
    assert loaded["step"] == 20 and torch.equal(loaded["w"], torch.ones(2))
    store.clear_scratch("fp")
    assert checkpointer.load() is None
    with pytest.raises(ArtifactError, match="weights_only"):
        checkpointer.save({"bad": object()}, 1)


# --- on-disk layout of fixed-size list columns: Parquet lists, the contract schema in the file itself


def contract_schema(classes):
    """The pseudo-label contract's shape (docs/CONTRACTS.md, Pseudo-label schema), rebuilt here: orchestrator tests do not import pipelines."""
    element = pa.field("element", pa.float32(), nullable=False)
    return pa.schema(
        [
            pa.field("sample_id", pa.int64(), nullable=False),
            pa.field("pred_class", pa.int32(), nullable=False),
            pa.field("confidence", pa.float32(), nullable=False),
            pa.field("probs", pa.list_(element, classes), nullable=False),
            pa.field("generation", pa.int32(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
        ]
    )


def contract_table(rows, classes, seed=0):
    probs = np.random.default_rng(seed).random((rows, classes), dtype=np.float32)
    schema = contract_schema(classes)
    columns = [
        pa.array(np.arange(rows, dtype=np.int64) * 3),
        pa.array(probs.argmax(1).astype(np.int32) if rows else [], pa.int32()),
        pa.array(probs.max(1) if rows else [], pa.float32()),
        pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), type=schema.field("probs").type),
        pa.array(np.full(rows, 4, np.int32)),
        pa.array(["small_cnn@g04"] * rows, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def as_output(table, how):
    """The two ways a stage hands a table over: whole, or streamed in batches (here uneven)."""
    if how == "table":
        return table
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=5))


def stored_file(tmp_path, manifest, name="pl"):
    import pyarrow.parquet as pq

    return pq.ParquetFile(tmp_path / manifest.outputs[name].path)


@pytest.mark.parametrize("how", ["table", "reader"])
@pytest.mark.parametrize("rows, classes", [(13, 7), (13, 1), (0, 10), (3, 1000)])
def test_fixed_size_list_round_trips_exactly(tmp_path, how, rows, classes):
    table = contract_table(rows, classes)
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("fp", "s", StageResult(outputs={"pl": as_output(table, how)}))
    loaded = store.load(manifest.outputs["pl"])
    assert loaded.schema.equals(contract_schema(classes), check_metadata=True)
    for name in table.column_names:
        assert loaded.column(name).equals(table.column(name)), name
    assert loaded.num_rows == rows and store.verify(manifest) == []


@pytest.mark.parametrize("how", ["table", "reader"])
def test_any_parquet_reader_sees_the_contract_schema_in_the_stored_file(tmp_path, how):
    """pandas, DuckDB and MLflow's dataset schema read the file, not ``ArtifactStore.load``."""
    import pyarrow.parquet as pq

    store = ArtifactStore(str(tmp_path))
    table = contract_table(13, 7)
    manifest = store.write_stage("fp", "s", StageResult(outputs={"pl": as_output(table, how)}))
    read = pq.read_table(tmp_path / manifest.outputs["pl"].path)
    assert read.schema.equals(contract_schema(7), check_metadata=True) and read.equals(table)


@pytest.mark.parametrize("how", ["table", "reader"])
def test_probs_are_an_uncompressed_parquet_list_without_dictionary_or_statistics(tmp_path, how):
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("fp", "s", StageResult(outputs={"pl": as_output(contract_table(20, 7), how)}))
    parquet = stored_file(tmp_path, manifest)
    leaf = next(
        parquet.schema.column(i)
        for i in range(len(parquet.schema))
        if parquet.schema.column(i).path.startswith("probs.")
    )
    assert leaf.physical_type == "FLOAT" and leaf.max_repetition_level == 1  # a list, not bytes
    row_group = parquet.metadata.row_group(0)
    columns = {row_group.column(i).path_in_schema: row_group.column(i) for i in range(row_group.num_columns)}
    probs = columns[leaf.path]
    assert probs.compression == "UNCOMPRESSED" and not probs.is_stats_set
    assert "RLE_DICTIONARY" not in probs.encodings and "PLAIN_DICTIONARY" not in probs.encodings
    assert "RLE_DICTIONARY" in columns["model"].encodings  # one model name repeated on every row
    assert columns["sample_id"].is_stats_set and columns["model"].compression == "UNCOMPRESSED"


@pytest.mark.parametrize("how", ["table", "reader"])
def test_loaded_probs_are_one_buffer_viewed_without_copy(tmp_path, how):
    """Streamed in batches of 5, the file has 5 row groups; the store still loads probs as one chunk."""
    store = ArtifactStore(str(tmp_path))
    table = contract_table(23, 7)
    manifest = store.write_stage("fp", "s", StageResult(outputs={"pl": as_output(table, how)}))
    assert stored_file(tmp_path, manifest).num_row_groups == (5 if how == "reader" else 1)
    column = store.load(manifest.outputs["pl"]).column("probs")
    assert column.num_chunks == 1
    values = column.chunk(0).flatten()
    view = values.to_numpy(zero_copy_only=True).reshape(-1, 7)
    assert view.ctypes.data == values.buffers()[1].address + values.offset * 4
    np.testing.assert_array_equal(view, table.column("probs").chunk(0).flatten().to_numpy().reshape(-1, 7))


def test_a_sliced_batch_stores_its_own_rows_not_the_parent_buffer(tmp_path):
    table = contract_table(12, 7)
    batches = [batch.slice(2, 5) for batch in table.to_batches()]  # offset 2: the values buffer starts earlier
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage(
        "fp", "s", StageResult(outputs={"pl": pa.RecordBatchReader.from_batches(table.schema, batches)})
    )
    assert store.load(manifest.outputs["pl"]).equals(table.slice(2, 5))


def null_probs(where):
    """A (sample_id, probs) batch under the contract's non-nullable fields, with one null ``where`` said."""
    schema = contract_schema(2).remove(5).remove(4).remove(2).remove(1)  # sample_id, probs
    values = pa.array([0.5, 0.5, None if where == "element" else 0.0, 1.0], pa.float32())
    mask = pa.array([False, where == "row"])
    probs = pa.FixedSizeListArray.from_arrays(values, 2, mask=mask)
    ids = pa.array([1, None if where == "scalar" else 2], pa.int64())
    return pa.RecordBatch.from_arrays([ids, probs], schema=schema)


@pytest.mark.parametrize("where, column", [("row", "probs"), ("element", "probs"), ("scalar", "sample_id")])
def test_nulls_in_a_non_nullable_column_are_refused_by_name_and_leave_no_file(tmp_path, where, column):
    """Parquet's writer would drop a null row of probs silently, and refuse the others as if storage failed."""
    store = ArtifactStore(str(tmp_path))
    batch = null_probs(where)
    with pytest.raises(
        ArtifactError, match=f"'pl': column '{column}' is declared non-nullable but holds nulls"
    ) as info:
        store.write_stage("fp", "s", StageResult(outputs={"pl": pa.Table.from_batches([batch])}))
    assert info.value.retryable is False
    assert not list((tmp_path / "stages" / "fp").glob("pl.parquet*"))


def test_nulls_in_nullable_list_elements_are_stored(tmp_path):
    """The check is about declared nullability only (null list rows: pyarrow 25 cannot read them back)."""
    element = pa.field("e", pa.float32(), nullable=True)
    schema = pa.schema([pa.field("p", pa.list_(element, 2), nullable=False)])
    probs = pa.FixedSizeListArray.from_arrays(
        pa.array([0.5, None, 0.0, 1.0], pa.float32()), type=schema.field("p").type
    )
    table = pa.Table.from_arrays([probs], schema=schema)
    store = ArtifactStore(str(tmp_path))
    loaded = store.load(store.write_stage("fp", "s", StageResult(outputs={"t": table})).outputs["t"])
    assert loaded.schema.equals(schema) and loaded.column("p").to_pylist() == [[0.5, None], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("/mnt/relay/store", "/mnt/relay/store/ray_train"),
        ("s3://bucket/relay/", "s3://bucket/relay/ray_train"),
        (
            "s3://bucket/relay?endpoint_override=127.0.0.1:9000&scheme=http",
            "s3://bucket/relay/ray_train?endpoint_override=127.0.0.1:9000&scheme=http",
        ),
    ],
)
def test_paths_under_a_store_go_before_its_query(store: str, expected: str) -> None:
    """Ray Train's storage under an S3 store named with endpoint options: after the query, pyarrow read
    `scheme=http/ray_train` and every data-parallel stage failed."""
    import pyarrow.fs as pafs

    from orchestrator.engine.train_run import train_storage_path

    assert train_storage_path(store) == expected
    if "endpoint_override" in store:  # (a plain s3:// URI would ask AWS for the bucket's region)
        _, path = pafs.FileSystem.from_uri(expected)
        assert path == "bucket/relay/ray_train"


def test_restart_progress_drops_another_runs_checkpoints_once_and_keeps_the_runs_own(tmp_path) -> None:
    """The scratch space and the Ray Train run of a stage rerun on request: another run's are dropped."""
    store = ArtifactStore(str(tmp_path))
    fp = "ab" * 32
    train_run = tmp_path / TRAIN_DIR / train_run_name(fp, "g00/train")
    (train_run / "checkpoint_000001").mkdir(parents=True)
    store.write_scratch(fp, "checkpoint.pt", b"left by a killed run")
    store.restart_progress(fp, "g00/train", "run-2")
    assert store.read_scratch(fp, "checkpoint.pt") is None and not train_run.exists()
    store.write_scratch(fp, "checkpoint.pt", b"run-2's own")
    store.restart_progress(fp, "g00/train", "run-2")  # run-2 resumed after a kill
    assert store.read_scratch(fp, "checkpoint.pt") == b"run-2's own"
    store.restart_progress(fp, "g00/train", "run-3")
    assert store.read_scratch(fp, "checkpoint.pt") is None
