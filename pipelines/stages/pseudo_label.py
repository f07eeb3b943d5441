"""The `pseudo_label` stages: a trained model labels the unlabeled split (the table of `pipelines.pseudo_label`).

`pseudo_label_generation` streams shards through `ctx.map_shards` (actors under Ray): plain softmax
for CReST, softmax(z / T) for Noisy Student (T is 1 for hard pseudo-labels:
pipelines.builders.noisy_student.label_temperature).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines.pseudo_label import predict_probs, pseudo_label_schema, to_table
from pipelines.stages.common import artifact, image_sources, known_accuracy, load_model, output_name


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

    batches = _counted_batches(ctx.map_shards(label, unlabeled_shards(split, size)), metrics, progress)
    reader = pa.RecordBatchReader.from_batches(pseudo_label_schema(checkpoint["num_classes"]), batches)
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


def _counted_batches(
    results: Iterator[tuple[pa.RecordBatch, tuple[int, int], float]],
    metrics: dict[str, float],
    progress: Callable[[int, float], None],
) -> Iterator[pa.RecordBatch]:
    """Pass the shards' batches through, telling ``progress`` (rows, accuracy) after each; ``metrics`` at the end."""
    rows = correct = scored = 0
    confidence = 0.0
    for batch, (shard_correct, shard_scored), shard_confidence in results:
        rows, confidence = rows + batch.num_rows, confidence + shard_confidence
        correct, scored = correct + shard_correct, scored + shard_scored
        progress(rows, correct / scored if scored else 0.0)
        yield batch
    metrics.update(
        accuracy=correct / scored if scored else 0.0,
        mean_confidence=confidence / rows if rows else 0.0,
        rows=float(rows),
    )
