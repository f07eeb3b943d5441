"""The `evaluate` stage of KE, Noisy Student and distillation: CReST's evaluation plus the network's size.

For KELS it also cuts the fit hypothesis out as a slim dense network and scores it, as the paper
does every generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from orchestrator.dag import StageContext, StageResult
from pipelines.datasets.image_source import ImageSource
from pipelines.evaluation import evaluate_model
from pipelines.knowledge_evolution import extract_slim_network, masks_from_state
from pipelines.models import parameter_count
from pipelines.stages.common import artifact, load_model, num_classes_of, prefixed, subset_images
from pipelines.stages.evaluate import evaluate_generation

TAIL_FRACTION = 0.3  # tail share when the builder passes none (KE, Noisy Student, distillation); CReST passes its own


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
