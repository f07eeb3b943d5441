"""Domain-similarity source selection (Cui et al. 2018): rank candidate sources, pretrain on the most similar.

`rank_sources` (`g00/similarity`) embeds the target's labeled images and every candidate source
with one feature extractor, computes EMD between their class-mean sets and `exp(-gamma * EMD)`
(pipelines.domains), and writes the ranking. `pretrain_on_source` (`g00/train`) builds the top
source and trains `model` on it; the target's fine-tuning then starts from it through the
`pretrained` role. The feature extractor is `domain.extractor`: "pixels" (the images themselves,
scaled to [0, 1]) or "pretrained" (the backbone of the run's `init.source` or pretext model, as the
paper uses a network trained on a large dataset). A randomly initialised network was tried and
dropped: global pooling of random filters left rotated digits closer to digits than noisy ones.

A source built from the target's own dataset uses the target split's UNLABELED images (with their
true labels): the target's labeled and test images never enter a source.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv
import torch

from orchestrator.dag import TAGS_FILE, StageContext, StageResult
from pipelines.data import cached_dataset
from pipelines.domains import class_means, derive_source, domain_emd, domain_similarity, rank
from pipelines.models import create_model
from pipelines.stages.augmentation import input_noise
from pipelines.stages.common import (
    artifact,
    model_checkpoint,
    output_name,
    stage_generator,
    subset_tensors,
)
from pipelines.stages.pretrained import start_from
from pipelines.stages.train_network import student_settings
from pipelines.training.student import StudentSettings, train_student
from pipelines.transfer import embed, load_pretrained

RANKING_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("emd", pa.float64(), nullable=False),
        pa.field("similarity", pa.float64(), nullable=False),
        pa.field("images", pa.int64(), nullable=False),
    ]
)


def source_data(source: Any, data: Any, split: pa.Table, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, int64 labels) of one candidate source, drawn with its own seed (the same in both stages)."""
    if source.dataset == data.name and source.root == data.root:
        _, images, labels = subset_tensors(data, split, "unlabeled")
    else:
        train = cached_dataset(source.dataset, source.root, data.image_size).train  # at the target's size
        images, labels = train.images, train.labels
    if len(images) == 0:
        raise ValueError(f"source {source.name!r} has no images; the target split leaves no unlabeled images")
    return derive_source(images, labels, source.transform, source.strength, torch.Generator().manual_seed(seed))


def features_of(
    inputs: Mapping[str, Any], params: Mapping[str, Any], device: str
) -> Callable[[torch.Tensor], np.ndarray]:
    """The feature extractor: pixels in [0, 1], or the backbone of the run's `pretrained` model."""
    if params["domain"].extractor == "pixels":
        return lambda images: images.float().flatten(1).numpy() / 255.0
    checkpoint = artifact(inputs, params, "pretrained")
    network = create_model(checkpoint["model"], 2, checkpoint["in_channels"])
    load_pretrained(network, checkpoint, keep_head=False)
    return lambda images: embed(network, images, params["batch_size"], device)


def rank_sources(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """EMD and similarity of every candidate source to the target, most similar first (metrics: similarity by name)."""
    data, domain = params["data"], params["domain"]
    split = artifact(inputs, params, "split")
    _, target_images, target_labels = subset_tensors(data, split, "labeled")
    features = features_of(inputs, params, ctx.device)
    target = class_means(features(target_images), target_labels.numpy())
    emds, sizes = {}, {}
    for index, source in enumerate(domain.sources):
        images, labels = source_data(source, data, split, params["source_seed"] + index)
        emds[source.name] = domain_emd(class_means(features(images), labels.numpy()), target)
        sizes[source.name] = len(images)
    similarity = {name: domain_similarity(emd, domain.gamma) for name, emd in emds.items()}
    order = rank(similarity)
    table = pa.table(
        {
            "source": order,
            "rank": list(range(len(order))),
            "emd": [emds[name] for name in order],
            "similarity": [similarity[name] for name in order],
            "images": [sizes[name] for name in order],
        },
        schema=RANKING_SCHEMA,
    )
    return StageResult(outputs={output_name(params, "ranking"): table}, metrics=dict(similarity), files=by_name(table))


CHOSEN_SOURCE_TAG = "domain.chosen_source"  # the run's tag naming the source pretraining reads (rank 0)


def by_name(ranking: pa.Table) -> dict[str, bytes]:
    """The ranking as its runs show it: ranking.csv (rank, source, EMD, similarity, images) and the chosen
    source's name as a tag; the metrics alone gave the chosen source as an index (source_rank0_index)."""
    text = io.BytesIO()
    pyarrow.csv.write_csv(ranking.select(["rank", "source", "emd", "similarity", "images"]), text)
    chosen = ranking.column("source")[0].as_py()
    return {"ranking.csv": text.getvalue(), TAGS_FILE: json.dumps({CHOSEN_SOURCE_TAG: chosen}).encode()}


def source_settings(params: Mapping[str, Any]) -> StudentSettings:
    """The source pretraining's loop settings: `train` at `domain.pretrain_steps`, no pseudo-labels, no teacher."""
    return student_settings(params["train"], None, None, params.get("init"), steps=params["domain"].pretrain_steps)


def pretrain_on_source(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train `model` on the most similar source (rank 0 of the ranking) with the `train` settings."""
    generator = stage_generator(ctx)
    data, domain, network, train = params["data"], params["domain"], params["model"], params["train"]
    ranking = artifact(inputs, params, "ranking")
    best = ranking.column("source")[0].as_py()
    index, source = next((i, s) for i, s in enumerate(domain.sources) if s.name == best)
    images, labels = source_data(source, data, artifact(inputs, params, "split"), params["source_seed"] + index)
    num_classes, in_channels = int(labels.max()) + 1, int(images.shape[1])
    model = create_model(network.name, num_classes, in_channels, network.dropout, network.stochastic_depth)
    model = start_from(model, artifact(inputs, params, "pretrained"), params.get("init"), ctx.stage)
    trained = train_student(
        model,
        images,
        labels,
        num_classes,
        source_settings(params),
        input_noise(train.augment, params["augment"], data),
        ctx.device,
        generator,
        report=ctx.report,
        report_every=train.report_every,
        progress=ctx.progress,
    )
    checkpoint = model_checkpoint(trained, network.name, num_classes, in_channels, network.dropout, images.shape[2:])
    metrics = {"source_images": float(len(images)), "source_rank0_index": float(index)}
    if ctx.series:
        metrics.update(ctx.series[-1][1])
    return StageResult(outputs={output_name(params, "model"): {**checkpoint, "source": best}}, metrics=metrics)
