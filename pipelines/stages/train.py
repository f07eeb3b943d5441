"""The `train` stages: FixMatch for CReST (`train_generation`); one loop for KE, Noisy Student and distillation.

`train_network` serves three methods; which roles the builder wires decides what it does:
`previous` + `masks` (KE: continue from the last checkpoint, re-initialise the reset hypothesis),
`picks` + `pseudo_labels` (Noisy Student: the filtered pseudo-labeled set), `teacher`
(distillation: the teacher's logits enter the loss). Both bodies start from `pretrained` weights
when the builder wires that role (transfer learning: the `init` params say how).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines.augment import strong_augment, weak_augment
from pipelines.datasets.image_source import ImageSource
from pipelines.knowledge_evolution import masks_from_state, reinitialize_reset_hypothesis, zero_reset_hypothesis
from pipelines.losses import class_balanced_weights
from pipelines.models import create_model, parameter_count
from pipelines.pseudo_label import probs_view
from pipelines.schedules import temperature
from pipelines.stages.common import (
    artifact,
    flips,
    image_sources,
    labeled_class_counts,
    load_model,
    model_checkpoint,
    num_classes_of,
    output_name,
    prefixed,
    settings_from,
    stage_generator,
    subset_arrays,
    subset_images,
)
from pipelines.stages.pretrained import schedule_of, start_from
from pipelines.training.fixmatch import FixMatchSettings, train_fixmatch
from pipelines.training.student import StudentSettings, train_student

log = logging.getLogger(__name__)


# --- CReST: FixMatch from scratch every generation ------------------------------------------


def fixmatch_settings(train: Any, crest: Any, generation: int, init: Any | None = None) -> FixMatchSettings:
    """FixMatch settings of one generation: the `train` section, CReST+'s alignment from `crest`, `init`'s freezing.

    CReST+ anneals the alignment temperature per generation, so ``temperature`` is this
    generation's point on the ``crest.schedule`` from 1.0 down to ``crest.t_min``.
    """
    t = temperature(generation, crest.generations, crest.t_min, crest.schedule)
    return settings_from(
        FixMatchSettings,
        train,
        alignment=crest.alignment,
        temperature=t,
        alignment_momentum=crest.alignment_momentum,
        p_model_estimate=crest.p_model_estimate,
        **schedule_of(init),
    )


def augmenters(augment: Any, data: Any) -> tuple[Any, Any]:
    """(weak, strong) uint8 -> uint8 augmentations of the `augment` section; the strong view starts with the weak one.

    ``data`` (the `data` section) decides a null `augment.weak.flip`: digits are never mirrored unless asked.
    """
    weak, strong, flip = augment.weak, augment.strong, flips(augment, data)
    weak_fn = functools.partial(weak_augment, flip=flip, pad_fraction=weak.pad_fraction)
    strong_fn = functools.partial(strong_augment, **strong.model_dump(), flip=flip, pad_fraction=weak.pad_fraction)
    return weak_fn, strong_fn


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
    (both official codes use the fixed labeled distribution).
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
    settings = fixmatch_settings(train, params["crest"], params["generation"], params.get("init"))
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
        p_labeled=alignment_base(split, num_classes),
    )
    checkpoint = model_checkpoint(ema_model, network.name, num_classes, in_channels, network.dropout)
    metrics = {
        "labeled_size": float(len(targets)),
        "temperature": settings.temperature,
        "resumed_from_step": float(resumed_from),
        "workers": float(ctx.world_size),
    }
    if ctx.series:
        metrics.update(ctx.series[-1][1])
        metrics["steps"] = float(ctx.series[-1][0])
    return StageResult(outputs={output_name(params, "model"): checkpoint}, metrics=metrics)


# --- KE, Noisy Student, distillation: one supervised loop -----------------------------------


def augment_of(kind: str, augment: Any, data: Any) -> Any:
    """The input noise of a training stage: none, weak (flip + crop) or strong (+ RandAugment, Cutout)."""
    if kind == "none":
        return None
    return augmenters(augment, data)[0 if kind == "weak" else 1]


def _initial_model(
    ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any], in_channels: int
) -> torch.nn.Module:
    """A fresh network (from the `pretrained` weights when wired), or (KE, generation > 0) the previous LAST
    checkpoint with its reset hypothesis redrawn."""
    network = params["model"]
    previous = artifact(inputs, params, "previous")
    if previous is None:
        num_classes = num_classes_of(params["data"])
        model = create_model(network.name, num_classes, in_channels, network.dropout, network.stochastic_depth)
        return start_from(model, artifact(inputs, params, "pretrained"), params.get("init"), ctx.stage).to(ctx.device)
    model = load_model(previous, ctx.device, network.stochastic_depth)
    masks = masks_from_state(artifact(inputs, params, "masks")["masks"])
    if params["ke"].reinit == "zero":
        zero_reset_hypothesis(model, masks)
    else:
        reinitialize_reset_hypothesis(
            model, masks, torch.Generator().manual_seed(ctx.seed + 1)
        )  # apart from the batch stream
    return model


def student_settings(train: Any, noisy: Any | None, distill: Any | None, init: Any | None = None) -> StudentSettings:
    """The loop's settings: the train section plus the Noisy Student, distillation and transfer knobs in play."""
    extra: dict[str, Any] = schedule_of(init)
    if noisy is not None:
        extra |= {
            "unlabel_ratio": noisy.unlabel_ratio,
            "pseudo_batch_ratio": noisy.pseudo_batch_ratio,
            "pseudo_label_smoothing": noisy.label_smoothing,
            "temperature": noisy.temperature,
        }
    if distill is not None:
        extra |= {"temperature": distill.temperature, "alpha": distill.alpha}
    return settings_from(StudentSettings, train, **extra)


def pseudo_labeled_set(
    data: Any, picks: pa.Table, pseudo_labels: pa.Table, label_type: str
) -> tuple[ImageSource, torch.Tensor]:
    """Images of the picks (duplicates kept: that is the balancing) with hard labels or the teacher's probs."""
    ids = picks.column("sample_id").to_numpy()
    images = image_sources(data)[0].subset(ids)
    if label_type == "hard":
        return images, torch.from_numpy(picks.column("label").to_numpy().astype(np.int64))
    row_of = {int(sample): row for row, sample in enumerate(pseudo_labels.column("sample_id").to_numpy())}
    rows = np.fromiter((row_of[int(sample)] for sample in ids), dtype=np.int64, count=len(ids))
    return images, torch.from_numpy(np.array(probs_view(pseudo_labels)[rows], dtype=np.float32))


def _class_weights(beta: float, split: pa.Table, num_classes: int) -> torch.Tensor | None:
    """Class-balanced CE weights from the labeled counts (effective number of samples), or None when beta is 0."""
    if beta <= 0:
        return None
    return class_balanced_weights(labeled_class_counts(split, num_classes).tolist(), beta)


def train_network(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train one generation's network (KE generation, Noisy Student teacher/student, distillation teacher/student)."""
    generator = stage_generator(ctx)
    data, network, train = params["data"], params["model"], params["train"]
    split = artifact(inputs, params, "split")
    _, images, targets = subset_images(data, split, "labeled")
    num_classes, in_channels = num_classes_of(data), images.image_shape[0]
    model = _initial_model(ctx, inputs, params, in_channels)
    pseudo_images = pseudo_targets = None
    picks = artifact(inputs, params, "picks")
    if picks is not None and picks.num_rows > 0:
        pseudo_images, pseudo_targets = pseudo_labeled_set(
            data, picks, artifact(inputs, params, "pseudo_labels"), params["noisy"].label_type
        )
    teacher_ckpt = artifact(inputs, params, "teacher")
    teacher = None if teacher_ckpt is None else load_model(teacher_ckpt, ctx.device)
    trained = train_student(
        model,
        images,
        targets,
        num_classes,
        student_settings(train, params.get("noisy"), params.get("distill"), params.get("init")),
        augment_of(train.augment, params["augment"], data),
        ctx.device,
        generator,
        pseudo_images=pseudo_images,
        pseudo_targets=pseudo_targets,
        teacher=teacher,
        class_weights=_class_weights(train.class_balanced_beta, split, num_classes),
        report=ctx.report,
        report_every=train.report_every,
    )
    checkpoint = model_checkpoint(trained, network.name, num_classes, in_channels, network.dropout)
    metrics = {
        "labeled_size": float(len(targets)),
        "pseudo_size": 0.0 if pseudo_images is None else float(len(pseudo_images)),
        "params": float(parameter_count(trained)),
        "steps": float(train.steps),
    }
    if ctx.series:
        metrics.update(ctx.series[-1][1])
    prefix = params.get("metric_prefix", "")
    return StageResult(outputs={output_name(params, "model"): checkpoint}, metrics=prefixed(metrics, prefix))
