"""The self-supervised first stage (`pretext/pretrain`) and linear probes of any model (`<stage prefix>/probe`).

`pretrain_pretext` trains `model` on RotNet or SimCLR over every training image of the split
(labeled and unlabeled; labels never read, test images never seen); its output starts the later
train stages through the `pretrained` role. `probe_model` scores frozen features of any stage's
model with a logistic regression fitted on the labeled split and tested on the test split
(docs/ALGORITHMS.md, Self-supervised pretraining).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines.models import create_model
from pipelines.self_supervised import ROTATIONS, linear_probe, with_projection_head
from pipelines.stages.augmentation import augmenters
from pipelines.stages.common import (
    artifact,
    model_checkpoint,
    num_classes_of,
    output_name,
    settings_from,
    stage_generator,
    subset_tensors,
)
from pipelines.training.pretext import PretextSettings, train_pretext
from pipelines.transfer import embed, load_pretrained

PROBE_SCHEMA = pa.schema(
    [pa.field("class_id", pa.int32(), nullable=False), pa.field("recall", pa.float32(), nullable=False)]
)


def training_images(data: Any, split: pa.Table) -> torch.Tensor:
    """Every training image of the split (labeled, then unlabeled): what a pretext task may see."""
    labeled = subset_tensors(data, split, "labeled")[1]
    unlabeled = subset_tensors(data, split, "unlabeled")[1]
    return torch.cat([labeled, unlabeled])


def pretext_settings(params: Mapping[str, Any]) -> PretextSettings:
    """The pretext stage's loop settings: the `pretext` section, whole."""
    return settings_from(PretextSettings, params["pretext"])


def pretrain_pretext(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train `model` on the pretext task; the checkpoint's `fc` is the rotation or projection head."""
    generator = stage_generator(ctx)
    data, network, pretext = params["data"], params["model"], params["pretext"]
    images = training_images(data, artifact(inputs, params, "split"))
    in_channels = int(images.shape[1])
    outputs = ROTATIONS if pretext.method == "rotnet" else pretext.projection_dim
    model = create_model(network.name, ROTATIONS, in_channels, network.dropout)
    if pretext.method == "simclr":
        model = with_projection_head(model, pretext.projection_dim)
    weak_fn, strong_fn = augmenters(params["augment"], data)
    trained = train_pretext(
        model,
        images,
        pretext_settings(params),
        weak_fn,
        strong_fn,
        ctx.device,
        generator,
        report=ctx.report,
        report_every=pretext.report_every,
        progress=ctx.progress,
    )
    checkpoint = model_checkpoint(trained, network.name, outputs, in_channels, network.dropout, images.shape[2:])
    metrics = {"images": float(len(images)), "steps": float(pretext.steps)}
    if ctx.series:
        metrics.update(ctx.series[-1][1])
    return StageResult(
        outputs={output_name(params, "model"): {**checkpoint, "pretext": pretext.method}}, metrics=metrics
    )


def probe_model(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Linear probe of a model's frozen features: fit on the labeled split, score on the test split."""
    data, network = params["data"], params["model"]
    split = artifact(inputs, params, "split")
    checkpoint = artifact(inputs, params, "model")
    _, train_images, train_labels = subset_tensors(data, split, "labeled")
    _, test_images, test_labels = subset_tensors(data, split, "test")
    body = create_model(checkpoint.get("model", network.name), 2, int(train_images.shape[1]), network.dropout)
    load_pretrained(body, checkpoint, keep_head=False)
    batch = params["batch_size"]
    num_classes = num_classes_of(data)
    result = linear_probe(
        embed(body, train_images, batch, ctx.device),
        train_labels.numpy(),
        embed(body, test_images, batch, ctx.device),
        test_labels.numpy(),
        num_classes,
    )
    table = pa.table({"class_id": list(range(num_classes)), "recall": result["recall"]}, schema=PROBE_SCHEMA)
    metrics = {
        "accuracy": result["accuracy"],
        "balanced_accuracy": result["balanced_accuracy"],
        "labeled_size": float(len(train_labels)),
    }
    return StageResult(outputs={output_name(params, "probe"): table}, metrics=metrics)
