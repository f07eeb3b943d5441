"""The `evaluate` stages: balanced accuracy, tail recall and per-class recall/precision on the test set.

`evaluate_generation` (CReST) scores the EMA model; `evaluate_network` (KE, Noisy Student,
distillation) adds the network's size and, for KELS, the slim fit-hypothesis network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines import plots
from pipelines.datasets.image_source import ImageSource
from pipelines.evaluation import evaluate_model, tail_classes
from pipelines.knowledge_evolution import extract_slim_network, masks_from_state
from pipelines.models import parameter_count
from pipelines.stages.common import (
    artifact,
    labeled_class_counts,
    load_model,
    num_classes_of,
    output_name,
    prefixed,
    subset_arrays,
    subset_images,
)

EVALUATION_SCHEMA = pa.schema(
    [
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("labeled_count", pa.int64(), nullable=False),
        pa.field("recall", pa.float32(), nullable=False),
        pa.field("precision", pa.float32(), nullable=False),
    ]
)

TAIL_FRACTION = 0.3  # tail share when the builder passes none (KE, Noisy Student, distillation); CReST passes its own


def training_counts(split: pa.Table, num_classes: int) -> list[int]:
    """Each class's whole training count (labeled + unlabeled with a known label): what breaks ties of the
    labeled counts when the tail is chosen."""
    _, unlabeled = subset_arrays(split, "unlabeled")
    known = unlabeled[unlabeled >= 0]
    return (labeled_class_counts(split, num_classes) + np.bincount(known, minlength=num_classes)).tolist()


def evaluate_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Balanced accuracy, tail recall and per-class recall/precision of the EMA model on the balanced test set."""
    data = params["data"]
    split = artifact(inputs, params, "split")
    model = load_model(artifact(inputs, params, "model"), ctx.device)
    _, images, labels = subset_images(data, split, "test")
    num_classes = num_classes_of(data)
    result = evaluate_model(model, images, labels, num_classes, ctx.device, params["batch_size"])
    counts = labeled_class_counts(split, num_classes)
    tail = tail_classes(counts.tolist(), params["tail_fraction"], tiebreak=training_counts(split, num_classes))
    metrics = {
        "balanced_accuracy": float(result["balanced_accuracy"]),
        "accuracy": float(result["accuracy"]),
        "tail_recall": float(np.mean([result["recall"][c] for c in tail])),
    }
    metrics.update({f"recall/{c}": float(r) for c, r in enumerate(result["recall"])})
    metrics.update({f"precision/{c}": float(p) for c, p in enumerate(result["precision"])})
    table = pa.table(
        {
            "class_id": list(range(num_classes)),
            "labeled_count": counts.tolist(),
            "recall": result["recall"],
            "precision": result["precision"],
        },
        schema=EVALUATION_SCHEMA,
    )
    files = {
        "per_class.png": plots.per_class_bars(result["recall"], result["precision"], counts.tolist()),
        "confusion.png": plots.confusion_matrix(result["confusion"]),
    }
    return StageResult(outputs={output_name(params, "evaluation"): table}, metrics=metrics, files=files)


def _slim_metrics(
    model: torch.nn.Module,
    masks_state: Mapping[str, Any],
    images: ImageSource,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int,
    device: str,
) -> dict[str, float]:
    """KELS: cut the fit hypothesis out as a slim dense network and score it (the paper does so every generation)."""
    slim = extract_slim_network(model, masks_from_state(masks_state["masks"])).to(device)
    result = evaluate_model(slim, images, labels, num_classes, device, batch_size)
    return {
        "slim_accuracy": float(result["accuracy"]),
        "slim_balanced_accuracy": float(result["balanced_accuracy"]),
        "slim_params": float(parameter_count(slim)),
    }


def evaluate_network(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """CReST's evaluation (balanced accuracy, per-class recall, plots) plus size, and the slim network for KELS."""
    result = evaluate_generation(ctx, inputs, {**params, "tail_fraction": params.get("tail_fraction", TAIL_FRACTION)})
    checkpoint = artifact(inputs, params, "model")
    model = load_model(checkpoint, ctx.device)
    metrics = dict(result.metrics)
    metrics["dense_params"] = float(parameter_count(model))
    masks_state = artifact(inputs, params, "masks")
    if masks_state is not None and masks_state["split_mode"] == "kels":
        data = params["data"]
        _, images, labels = subset_images(data, artifact(inputs, params, "split"), "test")
        metrics.update(
            _slim_metrics(model, masks_state, images, labels, num_classes_of(data), params["batch_size"], ctx.device)
        )
    return StageResult(
        outputs=result.outputs, metrics=prefixed(metrics, params.get("metric_prefix", "")), files=result.files
    )
