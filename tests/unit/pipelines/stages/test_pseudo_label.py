"""The pseudo-label stage body: lazy shards of the split, one model load per process, shard-size-free output.

Memory flat in N rests on two properties checked here without measuring memory: the shards are
cut from the split lazily (the mapper never receives a materialised list of every id, and the
reader has drawn at most one shard ahead of what it has yielded), and the output does not depend
on the shard size (so sharding is free to be small).
"""

import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from orchestrator.dag import StageContext, map_in_order
from orchestrator.engine.artifacts import ArtifactStore
from pipelines.models import create_model
from pipelines.pseudo_label import predict_probs, probs_view, to_table
from pipelines.schema import DataSection
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import common, pseudo_label

DATA = DataSection(name="synthetic")
SUBSETS = ("labeled", "unlabeled", "unlabeled", "test", "unlabeled")


def split_of(rows: int, chunks: int = 1) -> pa.Table:
    """A split whose subsets interleave (so shards must skip rows), optionally in several chunks."""
    labels = common.dataset_of(DATA).train.labels.numpy()
    ids = (np.arange(rows, dtype=np.int64) * 7) % len(labels)
    table = pa.table(
        {
            "sample_id": ids,
            "label": labels[ids].astype(np.int32),
            "subset": [SUBSETS[i % len(SUBSETS)] for i in range(rows)],
        },
        schema=SPLIT_SCHEMA,
    )
    bounds = np.linspace(0, rows, chunks + 1).astype(int)
    return pa.concat_tables([table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])])


def reference_unlabeled(split: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(split.column("subset").to_pylist()) == "unlabeled"
    return split.column("sample_id").to_numpy()[mask], split.column("label").to_numpy()[mask].astype(np.int64)


def checkpoint() -> dict:
    dataset = common.dataset_of(DATA).train
    torch.manual_seed(0)
    model = create_model("small_cnn", dataset.num_classes, int(dataset.images.shape[1]))
    return common.model_checkpoint(model, "small_cnn", dataset.num_classes, int(dataset.images.shape[1]), 0.0)


def run_stage(split: pa.Table, ckpt: dict, shard_size: int | None, mapper=map_in_order) -> tuple[pa.Table, dict]:
    ctx = StageContext(
        run_id="t", stage="g01/pseudo_label", generation=1, seed=0, device="cpu", attempt=1, shard_mapper=mapper
    )
    params = {
        "data": DATA,
        "batch_size": 16,
        "generation": 1,
        "io": {"split": "split", "model": "model", "pseudo_labels": "pl"},
    }
    if shard_size is not None:
        params["shard_size"] = shard_size
    result = pseudo_label.pseudo_label_generation(ctx, {"split": split, "model": ckpt}, params)
    table = result.outputs["pl"].read_all()
    return table, result.metrics


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("size", [1, 4, 7, 1000])
def test_unlabeled_shards_cut_the_unlabeled_rows_in_order(size, chunks):
    split = split_of(53, chunks)
    ids, labels = reference_unlabeled(split)
    shards = list(pseudo_label.unlabeled_shards(split, size))
    assert [len(s[0]) for s in shards[:-1]] == [size] * (len(shards) - 1)
    assert 1 <= len(shards[-1][0]) <= size
    np.testing.assert_array_equal(np.concatenate([s[0] for s in shards]), ids)
    np.testing.assert_array_equal(np.concatenate([s[1] for s in shards]), labels)
    assert all(s[0].dtype == np.int64 and s[1].dtype == np.int64 for s in shards)


def test_unlabeled_shards_of_a_split_without_unlabeled_rows_is_empty():
    split = split_of(20).filter(pa.compute.not_equal(split_of(20).column("subset"), "unlabeled"))
    assert list(pseudo_label.unlabeled_shards(split, 4)) == []
    with pytest.raises(ValueError, match="shard_size >= 1"):
        list(pseudo_label.unlabeled_shards(split, 0))


def test_stage_output_is_the_whole_set_labeled_at_once_whatever_the_shard_size():
    split, ckpt = split_of(180, chunks=2), checkpoint()
    ids, labels = reference_unlabeled(split)
    images = common.dataset_of(DATA).train.images[torch.from_numpy(ids)]
    probs = predict_probs(pseudo_label.load_model(ckpt, "cpu"), images, 16, "cpu")
    expected = to_table(ids, probs, 1, "small_cnn@g01")
    for size in (None, 13, 64):
        table, metrics = run_stage(split, ckpt, size)
        assert table.equals(expected), size
        assert metrics["rows"] == len(ids)
        assert metrics["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == labels)))
        assert metrics["mean_confidence"] == pytest.approx(float(probs.max(1).mean()), rel=1e-6)


def test_store_writes_one_row_group_per_shard_and_the_same_bytes_for_any_mapper(tmp_path):
    """The store streams a row group per shard: the digest depends on shard_size, never on who labels."""
    split, ckpt = split_of(100), checkpoint()
    refs = []
    for i, mapper in enumerate((map_in_order, lambda fn, shards: iter([fn(s) for s in list(shards)]))):
        ctx = StageContext(run_id="t", stage="s", generation=1, seed=0, device="cpu", attempt=1, shard_mapper=mapper)
        params = {
            "data": DATA,
            "batch_size": 16,
            "generation": 1,
            "shard_size": 9,
            "io": {"split": "split", "model": "model", "pseudo_labels": "pl"},
        }
        result = pseudo_label.pseudo_label_generation(ctx, {"split": split, "model": ckpt}, params)
        store = ArtifactStore(str(tmp_path / str(i)))
        refs.append(store.write_stage("f" * 64, "s", result).outputs["pl"])
        assert result.metrics["rows"] == 60
    assert refs[0].digest == refs[1].digest
    path = tmp_path / "0" / refs[0].path
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-60 // 9)


def test_stage_streams_shards_lazily():
    """The mapper gets an iterator, and the output has drawn at most one shard ahead of what it yielded."""
    drawn = []

    def counting_mapper(fn, shards):
        assert not isinstance(shards, (list, tuple)), "shards must be cut lazily, not materialised"
        for shard in shards:
            drawn.append(len(shard[0]))
            yield fn(shard)

    split, ckpt = split_of(200), checkpoint()
    ctx = StageContext(
        run_id="t", stage="s", generation=1, seed=0, device="cpu", attempt=1, shard_mapper=counting_mapper
    )
    params = {
        "data": DATA,
        "batch_size": 16,
        "generation": 1,
        "shard_size": 10,
        "io": {"split": "split", "model": "model", "pseudo_labels": "pl"},
    }
    reader = pseudo_label.pseudo_label_generation(ctx, {"split": split, "model": ckpt}, params).outputs["pl"]
    assert drawn == []  # nothing is labeled before the store starts writing
    for consumed, _ in enumerate(reader, start=1):
        assert len(drawn) <= consumed + 1
    assert sum(drawn) == 120 and len(drawn) == 12


def test_labeler_loads_the_model_once_and_pickles_without_it(monkeypatch):
    calls = []
    real = pseudo_label.load_model
    monkeypatch.setattr(pseudo_label, "load_model", lambda ckpt, device: calls.append(device) or real(ckpt, device))
    split, ckpt = split_of(200), checkpoint()
    run_stage(split, ckpt, 10)
    assert calls == ["cpu"]  # 12 shards, one load
    labeler = pseudo_label.ShardLabeler(DATA, ckpt, 16, 1, "m", "cpu")
    labeler(next(pseudo_label.unlabeled_shards(split, 5)))
    assert labeler._model is not None
    copy = pickle.loads(pickle.dumps(labeler))
    assert copy._model is None and copy.batch_size == 16
    batch, _, _ = copy(next(pseudo_label.unlabeled_shards(split, 5)))
    assert batch.num_rows == 5


def test_a_fresh_process_labels_a_shard_without_importing_pandas(tmp_path):
    """A labeling actor started for a stage call pays every import on its first shard: pandas (pulled in by
    ``pa.array``, ``pa.scalar`` and ``Array.to_numpy``) cost 0.15-0.25 s of a core there."""
    split, ckpt = split_of(40), checkpoint()
    ids, labels = reference_unlabeled(split)
    labeler = pseudo_label.ShardLabeler(DATA, ckpt, 16, 1, "small_cnn@g01", "cpu")
    (tmp_path / "labeler.pkl").write_bytes(pickle.dumps(labeler))
    (tmp_path / "shard.pkl").write_bytes(pickle.dumps((ids, labels)))
    script = (
        "import pickle, sys\n"
        f"labeler = pickle.loads(open({str(tmp_path / 'labeler.pkl')!r}, 'rb').read())\n"
        f"shard = pickle.loads(open({str(tmp_path / 'shard.pkl')!r}, 'rb').read())\n"
        f"result = labeler(shard)\n"
        f"open({str(tmp_path / 'result.pkl')!r}, 'wb').write(pickle.dumps(result))\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stdout + done.stderr
    batch, scored, confidence = pickle.loads((tmp_path / "result.pkl").read_bytes())
    expected_batch, expected_scored, expected_confidence = labeler(shard=(ids, labels))
    assert scored == expected_scored
    for name in ("sample_id", "pred_class", "model"):
        assert batch.column(name).equals(expected_batch.column(name)), name
    np.testing.assert_allclose(probs_of(batch), probs_of(expected_batch), rtol=1e-5)
    assert confidence == pytest.approx(expected_confidence, rel=1e-5)


def probs_of(batch: pa.RecordBatch) -> np.ndarray:
    """A shard's probabilities (two processes agree to float rounding: their torch thread counts differ)."""
    return probs_view(pa.Table.from_batches([batch]))
