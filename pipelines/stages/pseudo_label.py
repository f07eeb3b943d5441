"""The `pseudo_label` stages: a trained model labels the unlabeled split (the table of `pipelines.pseudo_label`).

`pseudo_label_generation` streams shards through `ctx.map_shards` (actors under Ray): plain softmax
for CReST, softmax(z / T) for Noisy Student (T is 1 for hard pseudo-labels:
pipelines.builders.noisy_student.label_temperature). Each labeled shard is spilled as a part
(``ctx.save_part``), so an interrupted attempt's successor replays the finished shards and labels
only the rest.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from orchestrator.dag import RESUMED_FROM_ROWS, StageContext, StageResult
from pipelines.pseudo_label import predict_probs, pseudo_label_schema, to_table
from pipelines.stages.common import artifact, image_sources, known_accuracy, load_model, output_name

logger = logging.getLogger(__name__)

Scores = tuple[int, int]  # (correct, scored) against the known labels


def pseudo_label_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """The model labels the whole unlabeled split: softmax(z / T), no threshold, no alignment.

    T is ``params["temperature"]`` where given (Noisy Student's soft pseudo-labels), else 1: CReST's
    EMA model, and Noisy Student's hard pseudo-labels, whose confidence the filter reads as the
    paper's plain softmax.

    The unlabeled ids are cut into shards of ``shard_size``; ``ctx.map_shards`` labels them (on
    actors under Ray, in a loop otherwise) and hands back one Arrow batch per shard, in shard order,
    which the store streams into Parquet. Shards are cut lazily from the split table, so neither
    this process nor any actor holds every id or probability row (memory flat in N,
    benchmarks/labeling.py), and the table is the same for any number of actors. Progress is
    counted in rows as the shards come back, with the pseudo-labels' accuracy so far.

    Resuming: every labeled shard is spilled as one part (``ctx.save_part``, an Arrow IPC file in
    the stage's scratch space) before it goes on to the output. A later attempt of the same stage
    (same fingerprint: model, split, settings) replays the parts it finds, in order, up to the
    first missing or unreadable one, and labels from there: the output is the same table, row
    groups and digest as an uninterrupted run's, and memory stays at one shard. The parts go with
    the scratch space once the output is stored, or when the stage is rerun on request.
    """
    split = artifact(inputs, params, "split")
    checkpoint = artifact(inputs, params, "model")
    size = int(params.get("shard_size", max(split.num_rows, 1)))
    label = ShardLabeler(
        data=params["data"],
        checkpoint=checkpoint,
        batch_size=params["batch_size"],
        generation=params["generation"],
        model_name=f"{checkpoint['model']}@g{params['generation']:02d}",
        device=ctx.device,
        temperature=float(params.get("temperature", 1.0)),
    )
    metrics: dict[str, float] = {}
    total = int(pc.sum(pc.equal(split.column("subset"), "unlabeled")).as_py() or 0)

    def progress(rows: int, accuracy: float) -> None:
        ctx.progress(rows, total, "rows", {"accuracy": accuracy})

    schema = pseudo_label_schema(checkpoint["num_classes"])
    batches = _resumed_batches(ctx, label, unlabeled_shards(split, size), schema, metrics, progress)
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    return StageResult(outputs={output_name(params, "pseudo_labels"): reader}, metrics=metrics)


def unlabeled_shards(split: pa.Table, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(sample ids, int64 labels) of the split's unlabeled rows, ``size`` rows a shard, in split order.

    A generator over slices of the split, filtered by Arrow: the stage holds about one shard of ids,
    never all N, and does no per-row Python work. Shard boundaries depend only on the split and
    ``size``, so the labeled table is the same however the shards are mapped.
    """
    if size < 1:
        raise ValueError(f"unlabeled_shards: expected shard_size >= 1, got {size}")
    ids: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    held = 0
    for batch in split.select(["sample_id", "label", "subset"]).to_batches(max_chunksize=size):
        kept = batch.filter(pc.equal(batch.column("subset"), "unlabeled"))
        ids.append(kept.column("sample_id").to_numpy())
        labels.append(kept.column("label").to_numpy().astype(np.int64))
        held += kept.num_rows
        while held >= size:
            all_ids, all_labels = np.concatenate(ids), np.concatenate(labels)
            yield all_ids[:size], all_labels[:size]
            ids, labels, held = [all_ids[size:]], [all_labels[size:]], held - size
    if held:
        yield np.concatenate(ids), np.concatenate(labels)


@dataclass
class ShardLabeler:
    """``ctx.map_shards``'s function: pseudo-labels of one shard of (sample ids, true labels).

    Runs where the shard is sent (an actor), so it reads the shard's images there (only those
    rows, for a sharded dataset) and loads the model there, once per actor per stage call (on its
    first shard, not on every shard: a warm actor keeps the unpickled function for the call);
    ``device`` falls back to the CPU when the worker has no GPU. Pickled without the loaded model.
    """

    data: Any  # the `data` config section
    checkpoint: Mapping[str, Any]
    batch_size: int
    generation: int
    model_name: str
    device: str
    temperature: float = 1.0
    _model: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def __call__(self, shard: tuple[np.ndarray, np.ndarray]) -> tuple[pa.RecordBatch, tuple[int, int], float]:
        """(rows as one batch, (correct, scored) against the known labels, confidence sum) of one shard."""
        ids, labels = shard
        device = self.device if self.device == "cpu" or torch.cuda.is_available() else "cpu"
        if self._model is None:
            self._model = load_model(self.checkpoint, device)
        images = image_sources(self.data)[0].subset(ids)
        probs = predict_probs(self._model, images, self.batch_size, device, self.temperature)
        batch = to_table(ids, probs, self.generation, self.model_name).combine_chunks().to_batches()[0]  # no copies
        # from the probabilities, not the batch's columns: Arrow's to_numpy imports pandas (see to_table)
        scored = known_accuracy(probs.argmax(axis=1), labels)
        return batch, scored, float(probs.max(axis=1, initial=0.0).sum())


@dataclass
class _Tally:
    """Rows, pseudo-label scores and confidence summed over the shards so far, in shard order."""

    rows: int = 0
    correct: int = 0
    scored: int = 0
    confidence: float = 0.0

    def add(self, batch: pa.RecordBatch, scores: Scores, confidence: float) -> None:
        self.rows += batch.num_rows
        self.correct, self.scored = self.correct + scores[0], self.scored + scores[1]
        self.confidence += confidence

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else 0.0


def _resumed_batches(
    ctx: StageContext,
    label: Callable[[tuple[np.ndarray, np.ndarray]], tuple[pa.RecordBatch, Scores, float]],
    shards: Iterator[tuple[np.ndarray, np.ndarray]],
    schema: pa.Schema,
    metrics: dict[str, float],
    progress: Callable[[int, float], None],
) -> Iterator[pa.RecordBatch]:
    """Every shard's batch in shard order: the ones an earlier attempt spilled, then the rest labeled and spilled.

    Progress is told (rows, accuracy) after each labeled shard; on a resume it is first told the
    replayed rows, so the board starts there and rates only what this attempt labels. ``metrics``
    gets the totals at the end, with the rows replayed (RESUMED_FROM_ROWS).
    """
    tally = _Tally()
    index = 0
    for shard in shards:
        spilled = _spilled_shard(ctx, index, shard[0], schema)
        if spilled is None:
            shards = itertools.chain([shard], shards)
            break
        tally.add(*spilled)
        index += 1
        yield spilled[0]
    resumed = tally.rows
    if resumed:
        logger.info("%s: resumed at row %d (%d shards an earlier attempt labeled)", ctx.stage, resumed, index)
        progress(resumed, tally.accuracy)
    for batch, scores, confidence in ctx.map_shards(label, shards):
        ctx.save_part(index, _spill(batch, scores, confidence))
        index += 1
        tally.add(batch, scores, confidence)
        progress(tally.rows, tally.accuracy)
        yield batch
    metrics.update(
        accuracy=tally.accuracy,
        mean_confidence=tally.confidence / tally.rows if tally.rows else 0.0,
        rows=float(tally.rows),
    )
    metrics[RESUMED_FROM_ROWS] = float(resumed)


def _spill(batch: pa.RecordBatch, scores: Scores, confidence: float) -> bytes:
    """One labeled shard as an Arrow IPC file: its batch, with its scores and confidence sum as the batch's metadata.

    Why IPC: it reads back as the very batch (same values, so the same Parquet row group) without
    decoding, and a file cut short has no footer, so it is never mistaken for a whole one.
    """
    sink = pa.BufferOutputStream()
    tally = {"correct": str(scores[0]), "scored": str(scores[1]), "confidence": repr(confidence)}
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch, custom_metadata=tally)
    return sink.getvalue().to_pybytes()


def _spilled_shard(
    ctx: StageContext, index: int, ids: np.ndarray, schema: pa.Schema
) -> tuple[pa.RecordBatch, Scores, float] | None:
    """Shard ``index`` as an earlier attempt spilled it, None when it did not or the part is unusable.

    A part is used only when it holds exactly this shard's ids with the stage's schema; a torn or
    foreign file is logged and the shard labeled again (its part then rewritten).
    """
    data = ctx.load_part(index)
    if data is None:
        return None
    try:
        reader = pa.ipc.open_file(pa.py_buffer(data))
        if reader.num_record_batches != 1:
            raise ValueError(f"{reader.num_record_batches} batches, expected 1")
        batch, meta = reader.get_batch_with_custom_metadata(0)
        if not batch.schema.equals(schema) or not batch.column("sample_id").equals(pa.array(ids, pa.int64())):
            raise ValueError("not this shard's rows")
        scores = (int(meta[b"correct"]), int(meta[b"scored"]))
        return batch, scores, float(meta[b"confidence"])
    except (pa.ArrowException, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: ignoring spilled shard %d (%s); labeling it again", ctx.stage, index, exc)
        return None
