"""The `evaluate` stage: balanced accuracy, tail recall and per-class recall/precision on the test set.

`evaluate_generation` (CReST) scores the EMA model; `stages.evaluate_network` (KE, Noisy Student,
distillation) adds the network's size and, for KELS, the slim network, in a module of its own so
that CReST's cache key does not digest Knowledge Evolution's code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.dag import StageContext, StageResult
from pipelines import plots
from pipelines.evaluation import evaluate_model, tail_classes
from pipelines.stages.common import (
    artifact,
    class_names,
    dataset_class_names,
    labeled_class_counts,
    load_model,
    num_classes_of,
    output_name,
    subset_arrays,
    subset_images,
)

logger = logging.getLogger(__name__)

EVALUATION_SCHEMA = pa.schema(
    [
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("labeled_count", pa.int64(), nullable=False),
        pa.field("recall", pa.float32(), nullable=False),
        pa.field("precision", pa.float32(), nullable=False),
    ]
)


def training_counts(split: pa.Table, num_classes: int) -> list[int]:
    """Each class's whole training count (labeled + unlabeled with a known label): what breaks ties of the
    labeled counts when the tail is chosen."""
    _, unlabeled = subset_arrays(split, "unlabeled")
    known = unlabeled[unlabeled >= 0]
    return (labeled_class_counts(split, num_classes) + np.bincount(known, minlength=num_classes)).tolist()


def class_labels(ids: Sequence[int], names: Sequence[str]) -> list[str]:
    """What a plot calls each class: its dataset id, with the dataset's name for it when that says more (`2 cat`)."""
    return [f"{i} {names[i]}" if i < len(names) and names[i] != str(i) else str(i) for i in ids]


def classes_file(ids: Sequence[int], names: Sequence[str]) -> bytes:
    """classes.json beside the plots: which name each per-class metric's id (`recall/2`) stands for."""
    return json.dumps(
        [{"class": c, "dataset_class": i, "name": names[i] if i < len(names) else str(i)} for c, i in enumerate(ids)],
        ensure_ascii=False,
        indent=1,
    ).encode()


def tail_recall(
    recall: Sequence[float], tail: Sequence[int], tested: Collection[int], names: Sequence[int], stage: str
) -> float | None:
    """Mean recall of the tail classes that have a test image; None (not measured) when none has.

    A class without test images has no recall to measure: scikit-learn fills in 0.0 for it
    (``zero_division``), and a user's test folder that lacked the rarest class read tail_recall
    0.0000 beside a balanced accuracy of 1. The classes left out are logged by ``names``.
    """
    untested = [c for c in tail if c not in tested]
    if untested:
        logger.warning(
            "%s: tail class(es) %s have no test image; tail_recall %s",
            stage,
            ", ".join(str(names[c]) for c in untested),
            "is not measured" if len(untested) == len(tail) else "is the mean over the others",
        )
    kept = [recall[c] for c in tail if c in tested]
    return float(np.mean(kept)) if kept else None


def evaluate_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Balanced accuracy, tail recall and per-class recall/precision of the EMA model on the balanced test set."""
    data = params["data"]
    split = artifact(inputs, params, "split")
    model = load_model(artifact(inputs, params, "model"), ctx.device)
    _, images, labels = subset_images(data, split, "test")
    num_classes = num_classes_of(data)
    result = evaluate_model(
        model,
        images,
        labels,
        num_classes,
        ctx.device,
        params["batch_size"],
        progress=lambda done, total: ctx.progress(done, total, "rows"),
    )
    counts = labeled_class_counts(split, num_classes)
    tail = tail_classes(counts.tolist(), params["tail_fraction"], tiebreak=training_counts(split, num_classes))
    names = class_names(data, num_classes)
    metrics = {
        "balanced_accuracy": float(result["balanced_accuracy"]),
        "accuracy": float(result["accuracy"]),
    }
    measured = tail_recall(result["recall"], tail, set(labels.tolist()), names, ctx.stage)
    if measured is not None:
        metrics["tail_recall"] = measured
    metrics.update({f"recall/{names[c]}": float(r) for c, r in enumerate(result["recall"])})
    metrics.update({f"precision/{names[c]}": float(p) for c, p in enumerate(result["precision"])})
    table = pa.table(
        {
            "class_id": list(range(num_classes)),
            "labeled_count": counts.tolist(),
            "recall": result["recall"],
            "precision": result["precision"],
        },
        schema=EVALUATION_SCHEMA,
    )
    files = evaluation_files(result, counts.tolist(), names, data, ctx.stage)
    return StageResult(outputs={output_name(params, "evaluation"): table}, metrics=metrics, files=files)


def evaluation_files(
    result: Mapping[str, Any], counts: Sequence[int], names: Sequence[int], data: Any, title: str, suffix: str = ""
) -> dict[str, bytes]:
    """An evaluation's files: per_class.png, confusion.png and classes.json, each name ending in ``suffix``.

    Every evaluation logs these three, LwF's once per task (``suffix`` "_old", "_new"), so a run's
    plots and the ids its per-class metrics use read the same wherever they come from.
    """
    dataset_names = dataset_class_names(data)
    labels_shown = class_labels(names, dataset_names)
    return {
        f"per_class{suffix}.png": plots.per_class_bars(result["recall"], result["precision"], counts, labels_shown),
        f"confusion{suffix}.png": plots.confusion_matrix(result["confusion"], labels_shown, title),
        f"classes{suffix}.json": classes_file(names, dataset_names),
    }
