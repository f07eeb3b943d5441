"""What every stage body shares: inputs and outputs by role, the dataset and split, checkpoints, seeds.

Every body has the engine's stage signature `(ctx, inputs, params) -> StageResult`. Inputs and
outputs are addressed by role through `params["io"]` (role -> artifact name), so the same body
serves every generation; the builders decide the names. The other params are the config's
sections themselves (`params["train"].steps`), validated once when the file was loaded; bodies
read their attributes and check nothing again. Configs stop at the bodies: losses, samplers and
training loops receive numbers, tensors and plain settings dataclasses (`settings_from`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from orchestrator.dag import StageContext, on_stage_end
from pipelines.data import DatasetSplits, cached_dataset
from pipelines.datasets.catalog import SHARDED, cached_manifest
from pipelines.datasets.image_source import (
    ImageSource,
    ShardSource,
    TensorSource,
    release_loader_workers,
    window_rows,
)
from pipelines.models import create_model
from pipelines.pseudo_label import picks_table

on_stage_end(release_loader_workers)  # loader workers live for one stage (orchestrator.dag.on_stage_end)


# --- inputs, outputs and data -------------------------------------------------------------


def artifact(inputs: Mapping[str, Any], params: Mapping[str, Any], role: str) -> Any:
    """The loaded input playing `role`, or None when the builder gave the stage no such input."""
    name = params["io"].get(role)
    return None if name is None else inputs[name]


def output_name(params: Mapping[str, Any], role: str) -> str:
    """The artifact name the builder gave the output playing `role` (`g03/model` for "model" in generation 3)."""
    return params["io"][role]


def subset_arrays(split: pa.Table, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """(sample ids, labels; -1 where unknown) of one subset of the split table, filtered by Arrow (no row in Python)."""
    mask = pc.equal(split.column("subset"), subset)
    ids = split.column("sample_id").filter(mask).to_numpy()
    labels = split.column("label").filter(mask).to_numpy()
    return ids, labels.astype(np.int64)


def subset_images(data: Any, split: pa.Table, subset: str) -> tuple[np.ndarray, ImageSource, torch.Tensor]:
    """(ids, their images, labels) of a subset; "test" reads the dataset's own test split if it has one."""
    train, test = image_sources(data)
    ids, labels = subset_arrays(split, subset)
    source = test if subset == "test" and test is not None else train
    return ids, source.subset(ids), torch.from_numpy(labels)


def subset_tensors(data: Any, split: pa.Table, subset: str) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """``subset_images`` read whole into one uint8 tensor, for the loops that take tensors (transfer, LwF,
    hints, pretext tasks, domain similarity): those subsets are labeled sets or pools sized for memory."""
    ids, source, labels = subset_images(data, split, subset)
    return ids, source.fetch(np.arange(len(source))), labels


def image_sources(data: Any) -> tuple[ImageSource, ImageSource | None]:
    """(train, test or None) images of the dataset a `data` section names, opened once per worker process.

    Ray reuses workers across stages, so an in-memory dataset is decoded once per process and a
    sharded one keeps its manifest and loader workers. Both carry the shuffle window of
    ``data.buffer_mb``, so the training batches are the same whichever path feeds them.
    """
    return _image_sources(
        data.name, data.root, data.uri, data.buffer_mb, data.loader_workers, data.image_size, _root_digest(data)
    )


def _root_digest(data: Any) -> str | None:
    """`data.root_digest`, a key of the per-process caches: a worker that outlives a change to the folder reads it again."""
    return getattr(data, "root_digest", None)


@functools.lru_cache(maxsize=4)
def _image_sources(
    name: str,
    root: str | None,
    uri: str | None,
    buffer_mb: int,
    workers: int,
    image_size: int | None,
    root_digest: str | None = None,
) -> tuple[ImageSource, ImageSource | None]:
    buffer = buffer_mb << 20
    if name == SHARDED:
        manifest = cached_manifest(uri)
        train = ShardSource(uri, manifest, "train", buffer, workers)
        return train, ShardSource(uri, manifest, "test", buffer, workers) if "test" in manifest.splits else None
    splits = cached_dataset(name, root, image_size, root_digest)
    window = window_rows(buffer, tuple(splits.train.images.shape[1:]))
    test = None if splits.test is None else TensorSource(splits.test.images, window)
    return TensorSource(splits.train.images, window), test


def dataset_of(data: Any) -> DatasetSplits:
    """The in-memory dataset a `data` config section names, read once per worker process."""
    return cached_dataset(data.name, data.root, data.image_size, _root_digest(data))


def dataset_class_names(data: Any) -> tuple[str, ...]:
    """The names of the dataset's classes by dataset id (a sharded dataset's manifest, an image folder's class
    folders, CIFAR's meta file); empty when its ids are its names (digits, the synthetic set)."""
    if data.name == SHARDED:
        return tuple(cached_manifest(data.uri).classes)
    return dataset_of(data).train.class_names


def num_classes_of(data: Any) -> int:
    """The class count of the task a `data` section names: its `classes` when it picks some, else the dataset's
    (from the data: configs do not repeat it)."""
    classes = getattr(data, "classes", None)
    if classes:
        return len(classes)
    if data.name == SHARDED:
        return cached_manifest(data.uri).num_classes
    return dataset_of(data).train.num_classes


def class_names(data: Any, num_classes: int) -> list[int]:
    """The dataset's own id of each class the model predicts: `data.classes` picks and relabels a subset
    (digits 5-9 become 0-4), and per-class metrics and plots must name the digits, not the positions.

    Every per-class name goes through here (evaluate's `recall/<c>`, the selections' `kept/<c>` and
    `rate/<c>`), so the same suffix names the same class in every stage of a run.
    """
    chosen = getattr(data, "classes", None)
    return list(chosen) if chosen else list(range(num_classes))


def known_accuracy(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(correct, scored) of predictions against true labels, leaving out unknown ones (-1): a pool without labels
    is scored on the rows that have one."""
    known = truth >= 0
    return int(np.sum(pred[known] == truth[known])), int(np.sum(known))


def labeled_class_counts(split: pa.Table, num_classes: int) -> np.ndarray:
    """Class counts of the ORIGINAL labeled set: CReST ranks classes by these."""
    _, labels = subset_arrays(split, "labeled")
    return np.bincount(labels, minlength=num_classes)


def stage_generator(ctx: StageContext) -> torch.Generator:
    """A torch generator seeded from the run seed; also seeds torch's global RNG for torchvision."""
    torch.manual_seed(ctx.seed)
    return torch.Generator().manual_seed(ctx.seed)


def prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """Metric names of a side branch (`baseline_...`), so they never collide with the generation's own."""
    return {f"{prefix}{key}": value for key, value in metrics.items()}


Settings = TypeVar("Settings")


def settings_from(settings: type[Settings], section: Any, **extra: Any) -> Settings:
    """A training loop's settings dataclass: every field ``section`` declares under the same name, plus ``extra``.

    ``extra`` carries what comes from elsewhere or under another name (CReST+'s temperature of this
    generation, Noisy Student's ``label_smoothing`` as ``pseudo_label_smoothing``). The section was
    validated when the file was loaded, so the dataclass checks nothing again.

    Every field must have a source: TypeError names one that neither ``section`` nor ``extra``
    gives. Why: the dataclasses have defaults of their own (for the unit tests and benchmarks that
    build them directly), and a config field renamed in the schema silently handed the loop that
    default instead of the user's value (LwF trained at 0.05 whatever `train.lr` said).
    """
    declared = type(section).model_fields
    unsourced = [f.name for f in fields(settings) if f.name not in declared and f.name not in extra]
    if unsourced:
        raise TypeError(_unsourced_message(settings, section, unsourced))
    shared = {f.name: getattr(section, f.name) for f in fields(settings) if f.name in declared and f.name not in extra}
    return settings(**shared, **extra)


def _unsourced_message(settings: type, section: Any, unsourced: Sequence[str]) -> str:
    """The error of a settings field with no source: which fields, and the two places one would have to come from."""
    names = ", ".join(unsourced)
    return (
        f"{settings.__name__}: no value for {names}: {type(section).__name__} declares no field of that name "
        f"and the stage passes none to settings_from; add it to {type(section).__name__} under that name, "
        f"or pass it to settings_from (a renamed config field: {unsourced[0]}=section.<new name>)"
    )


# --- selections from a pseudo-label table (CReST's rebalance, Noisy Student's filter) ---------


def predictions(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(int64 predicted class, confidence) of every row of a pseudo-label table: what a selection ranks."""
    return table.column("pred_class").to_numpy().astype(np.int64), table.column("confidence").to_numpy()


def picks_of(
    table: pa.Table, rows: np.ndarray, split: pa.Table, ids: Sequence[int], generation: int
) -> tuple[pa.Table, np.ndarray, dict[str, float]]:
    """The picks of the selected ``rows`` of a pseudo-label table, their per-class counts, and their metrics.

    Both selections (CReST's rebalance, Noisy Student's filter) report the same three things:
    ``kept/<c>``, ``kept_total`` (duplicates counted) and ``picks_accuracy``, scored against the true
    labels the split keeps for the unlabeled images (never used in training). ``ids`` (``class_names``)
    is the dataset id of each class the model predicts: ``kept/<c>`` names class c as ``recall/<c>`` does.
    """
    pred, confidence = predictions(table)
    sample_ids = table.column("sample_id").to_numpy()[rows]
    picks = picks_table(sample_ids, pred[rows], confidence[rows], generation)
    kept = np.bincount(pred[rows], minlength=len(ids))
    unlabeled_ids, unlabeled_labels = subset_arrays(split, "unlabeled")
    truth = unlabeled_labels[np.searchsorted(unlabeled_ids, sample_ids)]  # the split keeps ids sorted
    correct, scored = known_accuracy(pred[rows], truth)
    metrics = {f"kept/{ids[c]}": float(k) for c, k in enumerate(kept)}
    metrics["kept_total"] = float(len(rows))
    if scored:  # no picks (or none with a known label): no accuracy, shown as '-', not as 0
        metrics["picks_accuracy"] = correct / scored
    return picks, kept, metrics


def picks_files(
    pred: np.ndarray, kept: np.ndarray, picks: pa.Table, ids: Sequence[int], selection: str
) -> dict[str, bytes]:
    """The files a selection of pseudo-labels logs: per-class counts before and after it, and the picks.

    Both selections log them, so a generation shows in MLflow what its next model trains on
    (`rebalance/picks.csv`, `filter/picks.csv`), not only the kept/<c> numbers. Both name each class
    by its dataset id (``ids``, ``class_names``) as the metrics do: the histogram's ticks and the CSV's
    ``label`` (the picks artifact keeps the model's class numbers, which training reads).
    """
    from pipelines import plots

    before = np.bincount(pred, minlength=len(ids)).tolist()
    shown = [str(i) for i in ids]
    return {
        "pseudo_label_histogram.png": plots.class_histogram(before, kept.tolist(), selection, shown),
        "picks.csv": table_csv(labels_by_dataset_id(picks, ids)),
    }


def labels_by_dataset_id(picks: pa.Table, ids: Sequence[int]) -> pa.Table:
    """The picks with each ``label`` (the model's class number) replaced by its dataset id, for the logged CSV."""
    labels = np.asarray(ids, dtype=np.int32)[picks.column("label").to_numpy()]
    position = picks.schema.get_field_index("label")
    return picks.set_column(position, picks.schema.field(position), pa.array(labels, pa.int32()))


def table_csv(table: pa.Table) -> bytes:
    """A small table as CSV bytes, so the generation's MLflow run shows it without a Parquet reader."""
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


# --- checkpoints --------------------------------------------------------------------------


def model_checkpoint(
    model: torch.nn.Module,
    name: str,
    num_classes: int,
    in_channels: int,
    dropout: float,
    image_size: Sequence[int] | None = None,
) -> dict:
    """A checkpoint that loads with torch.load(weights_only=True): tensors and plain values only.

    ``image_size`` is the ``(H, W)`` the network trained at: a network with a global pool runs at
    any size, so only the checkpoint can tell MLflow's signature and pyfunc ``predict`` which one.
    """
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    trained_at = {} if image_size is None else {"image_height": int(image_size[0]), "image_width": int(image_size[1])}
    return {
        "state_dict": state,
        "model": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "dropout": dropout,
        **trained_at,
    }


def load_model(checkpoint: Mapping[str, Any], device: str, stochastic_depth: float = 0.0) -> torch.nn.Module:
    """The checkpoint's network in eval mode; stochastic_depth (for further training) leaves the keys unchanged."""
    model = create_model(
        checkpoint["model"],
        checkpoint["num_classes"],
        checkpoint["in_channels"],
        checkpoint["dropout"],
        stochastic_depth,
    )
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
