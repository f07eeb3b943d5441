"""Pseudo-label tables: exact schema, Parquet round trip, zero-copy probs, batched eval-mode inference."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from pipelines.pseudo_label import (
    picks_schema,
    picks_table,
    predict_probs,
    probs_view,
    pseudo_label_schema,
    to_table,
)

EXPECTED_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("pred_class", pa.int32(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("probs", pa.list_(pa.field("element", pa.float32(), nullable=False), 3), nullable=False),
        pa.field("generation", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
    ]
)

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]], dtype=np.float32)


def _table() -> pa.Table:
    return to_table(np.array([10, 11, 42, 7]), PROBS, generation=2, model_name="small_cnn@g02")


def test_schema_is_exactly_the_contract():
    schema = pseudo_label_schema(3)
    assert schema.equals(EXPECTED_SCHEMA)
    assert all(not field.nullable for field in schema)
    assert pa.types.is_fixed_size_list(schema.field("probs").type) and schema.field("probs").type.list_size == 3
    assert _table().schema.equals(EXPECTED_SCHEMA)


def test_pred_class_and_confidence_follow_probs():
    table = _table()
    assert table.column("sample_id").to_pylist() == [10, 11, 42, 7]
    assert table.column("pred_class").to_pylist() == [0, 2, 1, 0]
    np.testing.assert_allclose(table.column("confidence").to_numpy(), [0.7, 0.6, 0.5, 0.4], atol=1e-7)
    assert table.column("generation").to_pylist() == [2, 2, 2, 2]
    assert set(table.column("model").to_pylist()) == {"small_cnn@g02"}


def test_parquet_round_trip_keeps_schema_and_values(tmp_path):
    path = tmp_path / "pseudo_labels.parquet"
    pq.write_table(_table(), path)
    back = pq.read_table(path)
    assert back.schema.equals(EXPECTED_SCHEMA, check_metadata=False)
    assert str(back.schema.field("probs").type) == "fixed_size_list<element: float not null>[3]"
    np.testing.assert_array_equal(probs_view(back), PROBS)
    assert back.column("pred_class").to_pylist() == [0, 2, 1, 0]


def test_probs_view_is_zero_copy():
    table = _table()
    view = probs_view(table)
    np.testing.assert_array_equal(view, PROBS)
    values_buffer = table.column("probs").chunk(0).values.buffers()[1]
    assert view.__array_interface__["data"][0] == values_buffer.address
    assert not view.flags.writeable


@pytest.mark.parametrize("streamed", [False, True])
def test_a_table_loaded_from_the_artifact_store_is_the_contract_with_a_zero_copy_view(tmp_path, streamed):
    """Streamed in batches of 3, the file has several row groups; the loaded probs are still one buffer."""
    from orchestrator.dag import StageResult
    from orchestrator.engine.artifacts import ArtifactStore

    table = _table()
    output = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3)) if streamed else table
    store = ArtifactStore(str(tmp_path))
    loaded = store.load(store.write_stage("fp", "s", StageResult(outputs={"pl": output})).outputs["pl"])
    assert loaded.schema.equals(EXPECTED_SCHEMA, check_metadata=True) and loaded.equals(table)
    view = probs_view(loaded)
    np.testing.assert_array_equal(view, PROBS)
    assert loaded.column("probs").num_chunks == 1  # ParquetFile.read joins the row groups
    values = loaded.column("probs").chunk(0).values
    assert view.__array_interface__["data"][0] == values.buffers()[1].address and not view.flags.owndata


def test_probs_view_of_a_chunk_per_row_group_combines_them_once(tmp_path):
    """``pq.read_table`` keeps one chunk per row group; the view is then one contiguous copy."""
    path = tmp_path / "pl.parquet"
    table = _table()
    with pq.ParquetWriter(path, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=3):
            writer.write_batch(batch)
    back = pq.read_table(path)
    assert back.column("probs").num_chunks == 2
    view = probs_view(back)
    np.testing.assert_array_equal(view, PROBS)
    assert view.flags.c_contiguous and view.shape == (4, 3)


def test_probs_view_of_a_slice_starts_at_the_slice():
    table = _table().slice(1, 2)
    np.testing.assert_array_equal(probs_view(table), PROBS[1:3])


def test_to_table_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="sample ids"):
        to_table(np.arange(3), PROBS, 0, "m")


def test_picks_table_schema():
    table = picks_table(np.array([3, 1]), np.array([2, 0]), np.array([0.9, 0.8]), generation=1)
    expected = pa.schema(
        [
            pa.field("sample_id", pa.int64(), nullable=False),
            pa.field("label", pa.int32(), nullable=False),
            pa.field("confidence", pa.float32(), nullable=False),
            pa.field("generation", pa.int32(), nullable=False),
        ]
    )
    assert picks_schema().equals(expected) and table.schema.equals(expected)
    assert table.column("label").to_pylist() == [2, 0]


class _Recorder(nn.Module):
    """Logits = [mean pixel, -mean pixel, 0]; records batch sizes, train flag and grad mode per call."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], self.training, torch.is_grad_enabled()))
        mean = x.mean(dim=(1, 2, 3)) * self.scale
        return torch.stack([mean, -mean, torch.zeros_like(mean)], dim=1)


def test_predict_probs_streams_batches_in_eval_mode_without_grad():
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model = _Recorder().train()
    probs = predict_probs(model, images, batch_size=4, device="cpu")
    assert [call[0] for call in model.calls] == [4, 4, 2]
    assert all(not training and not grad for _, training, grad in model.calls)
    assert model.training  # mode restored
    x = (images.float() / 255 - 0.5) / 0.5  # to_float
    mean = x.mean(dim=(1, 2, 3)) * 2.0
    expected = torch.softmax(torch.stack([mean, -mean, torch.zeros_like(mean)], 1), 1).numpy()
    assert probs.dtype == np.float32 and probs.shape == (10, 3)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    sharpened = predict_probs(model, images, batch_size=4, device="cpu", temperature=0.5)
    expected_sharp = torch.softmax(torch.log(torch.from_numpy(expected)) * 2, 1).numpy()  # softmax(z / 0.5)
    np.testing.assert_allclose(sharpened, expected_sharp, atol=1e-5)


def test_predict_probs_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        predict_probs(_Recorder(), torch.zeros(2, 1, 4, 4), batch_size=2, device="cpu")


def test_to_table_equals_arrow_built_from_python_values_for_any_input_layout():
    """Columns come from numpy buffers: list ids, float64 and non-contiguous probs, a non-ASCII name, 0 rows."""
    probs64 = np.asfortranarray(PROBS.astype(np.float64))
    table = to_table([10, 11, 42, 7], probs64, generation=3, model_name="modèle@g03")
    table.validate(full=True)
    expected = pa.table(
        {
            "sample_id": [10, 11, 42, 7],
            "pred_class": [0, 2, 1, 0],
            "confidence": PROBS.max(axis=1).tolist(),
            "probs": PROBS.tolist(),
            "generation": [3] * 4,
            "model": ["modèle@g03"] * 4,
        },
        schema=pseudo_label_schema(3),
    )
    assert table.equals(expected)
    empty = to_table(np.empty(0, np.int64), np.empty((0, 3), np.float32), generation=0, model_name="m")
    empty.validate(full=True)
    assert empty.num_rows == 0 and empty.schema.equals(EXPECTED_SCHEMA)
