"""Stage bodies: unpack a stage's params into plain arguments and call the algorithm modules.

Each function has the engine's stage signature `(ctx, inputs, params) -> StageResult`.
Inputs and outputs are addressed by role through `params["io"]` (role -> artifact
name), so the same body serves every generation; the builders decide the names.
Configs stop here: losses, samplers and training loops receive numbers and tensors.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines import plots
from pipelines.augment import strong_augment, weak_augment
from pipelines.data import DatasetSplits, cached_dataset, load_labels
from pipelines.evaluation import class_metrics, tail_classes
from pipelines.models import create_model
from pipelines.pseudo_label import picks_table, predict_probs, pseudo_label_schema, to_table
from pipelines.sampling import crest_rates, select_crest
from pipelines.schedules import temperature
from pipelines.split import split_table
from pipelines.training import FixMatchSettings, train_fixmatch

log = logging.getLogger(__name__)

EVALUATION_SCHEMA = pa.schema(
    [
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("labeled_count", pa.int64(), nullable=False),
        pa.field("recall", pa.float32(), nullable=False),
        pa.field("precision", pa.float32(), nullable=False),
    ]
)


# --- inputs, outputs and data -------------------------------------------------------------


def artifact(inputs: Mapping[str, Any], params: Mapping[str, Any], role: str) -> Any:
    """The loaded input playing `role`, or None when the builder gave the stage no such input."""
    name = params["io"].get(role)
    return None if name is None else inputs[name]


def output_name(params: Mapping[str, Any], role: str) -> str:
    return params["io"][role]


def subset_arrays(split: pa.Table, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """(sample ids, labels) of one subset of the split table."""
    mask = np.asarray(split.column("subset").to_pylist()) == subset
    ids = split.column("sample_id").to_numpy()[mask]
    labels = split.column("label").to_numpy()[mask]
    return ids, labels.astype(np.int64)


def subset_images(data: Mapping[str, Any], split: pa.Table, subset: str) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(ids, uint8 images, labels) of a subset; "test" reads the dataset's own test split if it has one."""
    splits = dataset_of(data)
    ids, labels = subset_arrays(split, subset)
    source = splits.test if subset == "test" and splits.test is not None else splits.train
    index = torch.from_numpy(ids)
    return ids, source.images[index], torch.from_numpy(labels)


def dataset_of(data: Mapping[str, Any]) -> DatasetSplits:
    """The dataset a `data` config section names, read once per worker process (Ray reuses workers across stages)."""
    return cached_dataset(data["name"], data.get("root"))


def num_classes_of(data: Mapping[str, Any]) -> int:
    return dataset_of(data).train.num_classes


def labeled_class_counts(split: pa.Table, num_classes: int) -> np.ndarray:
    """Class counts of the ORIGINAL labeled set: CReST ranks classes by these."""
    _, labels = subset_arrays(split, "labeled")
    return np.bincount(labels, minlength=num_classes)


def stage_generator(ctx: StageContext) -> torch.Generator:
    """A torch generator seeded from the run seed; also seeds torch's global RNG for torchvision."""
    torch.manual_seed(ctx.seed)
    return torch.Generator().manual_seed(ctx.seed)


# --- checkpoints --------------------------------------------------------------------------


def model_checkpoint(model: torch.nn.Module, name: str, num_classes: int, in_channels: int, dropout: float) -> dict:
    """A checkpoint that loads with torch.load(weights_only=True): tensors and plain values only."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return {"state_dict": state, "model": name, "num_classes": num_classes, "in_channels": in_channels, "dropout": dropout}


def load_model(checkpoint: Mapping[str, Any], device: str, stochastic_depth: float = 0.0) -> torch.nn.Module:
    """The checkpoint's network in eval mode; stochastic_depth (for further training) leaves the keys unchanged."""
    model = create_model(checkpoint["model"], checkpoint["num_classes"], checkpoint["in_channels"], checkpoint["dropout"], stochastic_depth)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


# --- data split -----------------------------------------------------------------------------


def split_data(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Load the dataset and draw the split; every later stage reads images by sample id."""
    data = params["data"]
    table = split_table(data, load_labels(data["name"], data.get("root")))  # the labels the preflight drew from
    counts = {subset: int(np.sum(np.asarray(table.column("subset").to_pylist()) == subset)) for subset in ("labeled", "unlabeled", "test")}
    if counts["unlabeled"] == 0:
        raise ValueError("the split leaves no unlabeled images: lower data.labeled_fraction below 1")
    metrics = {f"{subset}_size": float(count) for subset, count in counts.items()}
    return StageResult(outputs={output_name(params, "split"): table}, metrics=metrics)


# --- training -------------------------------------------------------------------------------


def fixmatch_settings(train: Mapping[str, Any], crest: Mapping[str, Any], generation: int) -> FixMatchSettings:
    """FixMatch settings of one generation; CReST+ anneals the alignment temperature per generation."""
    t = temperature(generation, crest["generations"], crest["t_min"], crest["schedule"])
    return FixMatchSettings(
        steps=train["steps"], batch_size=train["batch_size"], unlabeled_ratio=train["unlabeled_ratio"],
        lr=train["lr"], momentum=train["momentum"], nesterov=train["nesterov"], weight_decay=train["weight_decay"],
        ema_decay=train["ema_decay"], threshold=train["threshold"], lambda_u=train["lambda_u"],
        alignment=crest["alignment"], temperature=t, alignment_momentum=crest["alignment_momentum"],
        label_smoothing=train["label_smoothing"],
    )


def augmenters(augment: Mapping[str, Any]) -> tuple[Any, Any]:
    weak, strong = augment["weak"], augment["strong"]
    weak_fn = functools.partial(weak_augment, flip=weak["flip"], pad_fraction=weak["pad_fraction"])
    strong_fn = functools.partial(
        strong_augment, style=strong["style"], num_ops=strong["num_ops"], magnitude=strong["magnitude"],
        cutout=strong["cutout"], flip=weak["flip"], pad_fraction=weak["pad_fraction"],
    )
    return weak_fn, strong_fn


def labeled_with_picks(data: Mapping[str, Any], split: pa.Table, picks: pa.Table | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ORIGINAL labeled set plus this generation's picks with their pseudo-labels (picks replace, never accumulate)."""
    _, images, labels = subset_images(data, split, "labeled")
    if picks is None or picks.num_rows == 0:
        return images, labels
    train_images = dataset_of(data).train.images
    pick_ids = torch.from_numpy(picks.column("sample_id").to_numpy().copy())
    pick_labels = torch.from_numpy(picks.column("label").to_numpy().astype(np.int64))
    return torch.cat([images, train_images[pick_ids]]), torch.cat([labels, pick_labels])


def train_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train a new model from random initialisation with FixMatch (CReST retrains every generation)."""
    generator = stage_generator(ctx)
    data, model_cfg = params["data"], params["model"]
    split = artifact(inputs, params, "split")
    images, targets = labeled_with_picks(data, split, artifact(inputs, params, "picks"))
    _, unlabeled, _ = subset_images(data, split, "unlabeled")
    num_classes, in_channels = num_classes_of(data), int(images.shape[1])
    model = create_model(model_cfg["name"], num_classes, in_channels, model_cfg["dropout"], model_cfg["stochastic_depth"]).to(ctx.device)
    settings = fixmatch_settings(params["train"], params["crest"], params["generation"])
    weak_fn, strong_fn = augmenters(params["augment"])
    resume = ctx.load_checkpoint()
    resumed_from = int(resume["step"]) if resume is not None else 0
    if resume is not None:
        log.info("%s: resuming at step %d of %d from the checkpoint of an earlier attempt", ctx.stage, resumed_from, settings.steps)
    ema_model = train_fixmatch(
        model, images, targets, unlabeled, num_classes, settings, weak_fn, strong_fn, ctx.device, generator,
        report=ctx.report, report_every=params["train"]["report_every"], rank=ctx.rank, world_size=ctx.world_size,
        checkpoint_every=params["train"].get("checkpoint_every", 0), save_checkpoint=ctx.save_checkpoint, resume=resume,
    )
    checkpoint = model_checkpoint(ema_model, model_cfg["name"], num_classes, in_channels, model_cfg["dropout"])
    metrics = {"labeled_size": float(len(targets)), "temperature": settings.temperature,
               "resumed_from_step": float(resumed_from), "workers": float(ctx.world_size)}
    if ctx.series:
        metrics.update(ctx.series[-1][1])
        metrics["steps"] = float(ctx.series[-1][0])
    return StageResult(outputs={output_name(params, "model"): checkpoint}, metrics=metrics)


# --- evaluation ----------------------------------------------------------------------------


def evaluate_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Balanced accuracy, tail recall and per-class recall/precision of the EMA model on the balanced test set."""
    data = params["data"]
    split = artifact(inputs, params, "split")
    model = load_model(artifact(inputs, params, "model"), ctx.device)
    _, images, labels = subset_images(data, split, "test")
    num_classes = num_classes_of(data)
    probs = predict_probs(model, images, params["batch_size"], ctx.device)
    result = class_metrics(probs.argmax(axis=1), labels.numpy(), num_classes)
    counts = labeled_class_counts(split, num_classes)
    tail = tail_classes(counts.tolist(), params["tail_fraction"])
    metrics = {
        "balanced_accuracy": float(result["balanced_accuracy"]),
        "accuracy": float(result["accuracy"]),
        "tail_recall": float(np.mean([result["recall"][c] for c in tail])),
    }
    metrics.update({f"recall/{c}": float(r) for c, r in enumerate(result["recall"])})
    metrics.update({f"precision/{c}": float(p) for c, p in enumerate(result["precision"])})
    table = pa.table(
        {"class_id": list(range(num_classes)), "labeled_count": counts.tolist(),
         "recall": result["recall"], "precision": result["precision"]},
        schema=EVALUATION_SCHEMA,
    )
    files = {
        "per_class.png": plots.per_class_bars(result["recall"], result["precision"], counts.tolist()),
        "confusion.png": plots.confusion_matrix(result["confusion"]),
    }
    return StageResult(outputs={output_name(params, "evaluation"): table}, metrics=metrics, files=files)


# --- pseudo-labels and rebalancing ----------------------------------------------------------


def pseudo_label_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """The EMA model labels the whole unlabeled split: plain softmax, no threshold, no alignment.

    The unlabeled ids are cut into shards of ``shard_size``; ``ctx.map_shards`` labels them (on
    actors under Ray, in a loop otherwise) and hands back one Arrow batch per shard, in shard order,
    which the store streams into Parquet. Shards are cut lazily from the split table, so neither
    this process nor any actor holds every id or probability row (memory flat in N,
    benchmarks/labeling.py), and the table is the same for any number of actors.
    """
    split = artifact(inputs, params, "split")
    checkpoint = artifact(inputs, params, "model")
    size = int(params.get("shard_size", max(split.num_rows, 1)))
    label = ShardLabeler(
        data=params["data"], checkpoint=checkpoint, batch_size=params["batch_size"], generation=params["generation"],
        model_name=f"{checkpoint['model']}@g{params['generation']:02d}", device=ctx.device,
    )
    metrics: dict[str, float] = {}
    batches = _counted_batches(ctx.map_shards(label, unlabeled_shards(split, size)), metrics)
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

    Runs where the shard is sent (an actor), so it loads the images and the model there, the model
    once per process (on its first shard, not on every shard); ``device`` falls back to the CPU
    when the worker has no GPU. Pickled without the loaded model.
    """

    data: Mapping[str, Any]
    checkpoint: Mapping[str, Any]
    batch_size: int
    generation: int
    model_name: str
    device: str
    _model: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def __call__(self, shard: tuple[np.ndarray, np.ndarray]) -> tuple[pa.RecordBatch, int, float]:
        """(rows as one batch, correct count, confidence sum) of one shard."""
        ids, labels = shard
        device = self.device if self.device == "cpu" or torch.cuda.is_available() else "cpu"
        if self._model is None:
            self._model = load_model(self.checkpoint, device)
        dataset = dataset_of(self.data).train
        images = dataset.images[torch.tensor(ids, dtype=torch.int64)]  # a copy: Ray hands shards over read-only
        probs = predict_probs(self._model, images, self.batch_size, device)
        batch = to_table(ids, probs, self.generation, self.model_name).combine_chunks().to_batches()[0]  # no copies
        correct = int(np.sum(batch.column("pred_class").to_numpy() == labels))
        return batch, correct, float(batch.column("confidence").to_numpy().sum())


def _counted_batches(results: Iterator[tuple[pa.RecordBatch, int, float]], metrics: dict[str, float]) -> Iterator[pa.RecordBatch]:
    """Pass the shards' batches through, filling ``metrics`` once the last one has gone by."""
    rows = correct = 0
    confidence = 0.0
    for batch, shard_correct, shard_confidence in results:
        rows, correct, confidence = rows + batch.num_rows, correct + shard_correct, confidence + shard_confidence
        yield batch
    metrics.update(accuracy=correct / rows if rows else 0.0, mean_confidence=confidence / rows if rows else 0.0,
                   rows=float(rows))


def rebalance_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """CReST: keep the most confident fraction mu_l of each predicted class, more of rarer classes."""
    split = artifact(inputs, params, "split")
    table = artifact(inputs, params, "pseudo_labels")
    num_classes = num_classes_of(params["data"])
    counts = labeled_class_counts(split, num_classes)
    rates = crest_rates(counts.tolist(), params["alpha"])
    pred = table.column("pred_class").to_numpy().astype(np.int64)
    confidence = table.column("confidence").to_numpy()
    rows = select_crest(pred, confidence, rates, params["selection"], np.random.default_rng(ctx.seed))
    ids = table.column("sample_id").to_numpy()[rows]
    picks = picks_table(ids, pred[rows], confidence[rows], params["generation"])
    kept = np.bincount(pred[rows], minlength=num_classes)
    truth = dict(zip(*subset_arrays(split, "unlabeled")))
    correct = [truth[int(i)] == int(p) for i, p in zip(ids, pred[rows])]
    metrics = {f"kept/{c}": float(k) for c, k in enumerate(kept)}
    metrics.update({f"rate/{c}": float(r) for c, r in enumerate(rates)})
    metrics["kept_total"] = float(len(rows))
    metrics["picks_accuracy"] = float(np.mean(correct)) if correct else 0.0
    files = {
        "pseudo_label_histogram.png": plots.class_histogram(np.bincount(pred, minlength=num_classes).tolist(), kept.tolist()),
        "picks.csv": table_csv(picks),
    }
    return StageResult(outputs={output_name(params, "picks"): picks}, metrics=metrics, files=files)


def table_csv(table: pa.Table) -> bytes:
    """A small table as CSV bytes, so the generation's MLflow run shows it without a Parquet reader."""
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()
