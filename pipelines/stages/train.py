"""The CReST `train` stage: FixMatch from scratch every generation (`train_generation`).

KE, Noisy Student and distillation train through `stages.train_network`. The two live apart
because a stage's cache key digests the modules its body imports (docs/CONTRACTS.md,
Fingerprint): an edit to the supervised loop must not retrain CReST, nor the reverse.
Both start from `pretrained` weights when the builder wires that role (transfer learning: the
`init` params say how).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import RESUMED_FROM_STEP, StageContext, StageResult
from pipelines.datasets.image_source import ImageSource
from pipelines.models import create_model
from pipelines.stages.augmentation import augmenters
from pipelines.stages.common import (
    artifact,
    image_sources,
    labeled_class_counts,
    model_checkpoint,
    num_classes_of,
    output_name,
    settings_from,
    stage_generator,
    subset_arrays,
    subset_images,
)
from pipelines.stages.pretrained import schedule_of, start_from
from pipelines.training.fixmatch import FixMatchSettings, train_fixmatch

log = logging.getLogger(__name__)


# --- CReST: FixMatch from scratch every generation ------------------------------------------


def fixmatch_settings(train: Any, crest: Any, init: Any | None = None) -> FixMatchSettings:
    """FixMatch settings of one generation: the `train` section, CReST+'s alignment (``crest``: the generation's
    ``GenerationAlignment``, its temperature already on the schedule), `init`'s freezing."""
    return settings_from(
        FixMatchSettings,
        train,
        alignment=crest.alignment,
        temperature=crest.temperature,
        alignment_momentum=crest.alignment_momentum,
        p_model_estimate=crest.p_model_estimate,
        **schedule_of(init),
    )


def labeled_with_picks(data: Any, split: pa.Table, picks: pa.Table | None) -> tuple[ImageSource, torch.Tensor]:
    """The ORIGINAL labeled set plus this generation's picks with their pseudo-labels (picks replace, never accumulate)."""
    ids, labels = subset_arrays(split, "labeled")
    if picks is not None and picks.num_rows > 0:
        ids = np.concatenate([ids, picks.column("sample_id").to_numpy()])
        labels = np.concatenate([labels, picks.column("label").to_numpy().astype(np.int64)])
    return image_sources(data)[0].subset(ids), torch.from_numpy(labels)


def alignment_base(split: pa.Table, num_classes: int) -> torch.Tensor:
    """The distribution CReST+ tempers into its alignment target: the ORIGINAL labeled set's.

    Not the labeled set plus picks: the picks are rebalanced toward the tail and come from the
    model itself, so the target would flatten and drift with each generation's pseudo-labels
    (a fixed labeled distribution; the official TF code uses the analytic long-tail gt_p_data,
    close to these counts).
    """
    counts = torch.from_numpy(labeled_class_counts(split, num_classes)).float()
    return counts / counts.sum()


def train_generation(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train a new model from random initialisation with FixMatch (CReST retrains every generation)."""
    generator = stage_generator(ctx)
    data, network, train = params["data"], params["model"], params["train"]
    split = artifact(inputs, params, "split")
    images, targets = labeled_with_picks(data, split, artifact(inputs, params, "picks"))
    _, unlabeled, _ = subset_images(data, split, "unlabeled")
    num_classes, in_channels = num_classes_of(data), images.image_shape[0]
    model = create_model(network.name, num_classes, in_channels, network.dropout, network.stochastic_depth)
    model = start_from(model, artifact(inputs, params, "pretrained"), params.get("init"), ctx.stage).to(ctx.device)
    settings = fixmatch_settings(train, params["crest"], params.get("init"))
    weak_fn, strong_fn = augmenters(params["augment"], data)
    resume = ctx.load_checkpoint()
    resumed_from = int(resume["step"]) if resume is not None else 0
    if resume is not None:
        log.info(
            "%s: resuming at step %d of %d from the checkpoint of an earlier attempt",
            ctx.stage,
            resumed_from,
            settings.steps,
        )
    ema_model = train_fixmatch(
        model,
        images,
        targets,
        unlabeled,
        num_classes,
        settings,
        weak_fn,
        strong_fn,
        ctx.device,
        generator,
        report=ctx.report,
        report_every=train.report_every,
        rank=ctx.rank,
        world_size=ctx.world_size,
        checkpoint_every=train.checkpoint_every,
        save_checkpoint=ctx.save_checkpoint,
        resume=resume,
        progress=ctx.progress,
        p_labeled=alignment_base(split, num_classes),
    )
    checkpoint = model_checkpoint(
        ema_model, network.name, num_classes, in_channels, network.dropout, images.image_shape[1:]
    )
    metrics = {
        "labeled_size": float(len(targets)),
        "temperature": settings.temperature,
        RESUMED_FROM_STEP: float(resumed_from),
        "workers": float(ctx.world_size),
    }
    if ctx.series:
        metrics.update(ctx.series[-1][1])
        metrics["steps"] = float(ctx.series[-1][0])
    return StageResult(outputs={output_name(params, "model"): checkpoint}, metrics=metrics)
