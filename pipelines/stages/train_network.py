"""The `train` stage of KE, Noisy Student and distillation: one supervised loop (`train_network`).

Which roles the builder wires decides what it does: `previous` + `masks` (KE: continue from the
last checkpoint, re-initialise the reset hypothesis), `picks` + `pseudo_labels` (Noisy Student:
the filtered pseudo-labeled set), `teacher` (distillation: the teacher's logits enter the loss).
It starts from `pretrained` weights when the builder wires that role (transfer learning: the `init`
params say how).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines.datasets.image_source import ImageSource
from pipelines.knowledge_evolution import masks_from_state, reinitialize_reset_hypothesis, zero_reset_hypothesis
from pipelines.losses import class_balanced_weights
from pipelines.models import create_model, parameter_count
from pipelines.pseudo_label import probs_view
from pipelines.stages.augmentation import input_noise
from pipelines.stages.common import (
    artifact,
    class_names,
    image_sources,
    labeled_class_counts,
    load_model,
    model_checkpoint,
    num_classes_of,
    output_name,
    prefixed,
    settings_from,
    stage_generator,
    subset_images,
)
from pipelines.stages.pretrained import schedule_of, start_from
from pipelines.training.common import Report
from pipelines.training.student import StudentSettings, train_student


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


# The loop's pseudo-label knobs in a stage with no pseudo-labeled set (no `noisy` in its params) and its teacher knobs
# in one with no teacher (no `distill`): train_student reads them only with that set or that teacher, so these
# values change nothing. They are given because settings_from wants a source for every settings field.
WITHOUT_PSEUDO_LABELS = {"unlabel_ratio": 0.0, "pseudo_batch_ratio": 1, "pseudo_label_smoothing": 0.0}
WITHOUT_TEACHER = {"temperature": 1.0, "alpha": 0.0}


def student_settings(
    train: Any, noisy: Any | None, distill: Any | None, init: Any | None = None, **extra: Any
) -> StudentSettings:
    """The loop's settings: the train section plus the Noisy Student, distillation and transfer knobs in play.

    ``extra`` overrides any of them (the source pretraining of domain similarity: its own length).
    """
    knobs: dict[str, Any] = {**WITHOUT_PSEUDO_LABELS, **WITHOUT_TEACHER, **schedule_of(init)}
    if noisy is not None:
        knobs |= {
            "unlabel_ratio": noisy.unlabel_ratio,
            "pseudo_batch_ratio": noisy.pseudo_batch_ratio,
            "pseudo_label_smoothing": noisy.label_smoothing,
        }
    if distill is not None:
        knobs |= {"temperature": distill.temperature, "alpha": distill.alpha}
    return settings_from(StudentSettings, train, **knobs | extra)


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


def class_weight_metrics(weights: torch.Tensor | None, names: list[int]) -> dict[str, float]:
    """`class_weight/<class>`: the class-balanced weight each class's loss was multiplied by (none without beta).

    Why: the weights follow from `train.class_balanced_beta` and the labeled counts of the split,
    and nothing showed them, so a run did not say what it had trained with. Named by the dataset's
    class ids, as `recall/<class>` is.
    """
    if weights is None:
        return {}
    return {f"class_weight/{name}": float(weight) for name, weight in zip(names, weights.tolist(), strict=True)}


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
    prefix = params.get("metric_prefix", "")
    teacher_ckpt = artifact(inputs, params, "teacher")
    teacher = None if teacher_ckpt is None else load_model(teacher_ckpt, ctx.device)
    class_weights = _class_weights(train.class_balanced_beta, split, num_classes)
    trained = train_student(
        model,
        images,
        targets,
        num_classes,
        student_settings(train, params.get("noisy"), params.get("distill"), params.get("init")),
        input_noise(train.augment, params["augment"], data),
        ctx.device,
        generator,
        pseudo_images=pseudo_images,
        pseudo_targets=pseudo_targets,
        teacher=teacher,
        class_weights=class_weights,
        report=prefixed_report(ctx.report, prefix),
        report_every=train.report_every,
        progress=ctx.progress,
    )
    checkpoint = model_checkpoint(
        trained, network.name, num_classes, in_channels, network.dropout, images.image_shape[1:]
    )
    metrics = {
        "labeled_size": float(len(targets)),
        "params": float(parameter_count(trained)),
        "steps": float(train.steps),
    }
    metrics |= class_weight_metrics(class_weights, class_names(data, num_classes))
    if picks is not None:  # a Noisy Student student; every other train stage has no pseudo-labeled set to count
        metrics["pseudo_size"] = 0.0 if pseudo_images is None else float(len(pseudo_images))
    metrics = prefixed(metrics, prefix)
    if ctx.series:
        metrics.update(ctx.series[-1][1])  # reported through prefixed_report: already prefixed
    return StageResult(outputs={output_name(params, "model"): checkpoint}, metrics=metrics)


def prefixed_report(report: Report, prefix: str) -> Report:
    """``report`` with the stage's metric prefix on every name, so a side branch's curves and finals agree.

    Why: `baseline/train` logged its per-step curves as `loss` and `lr` but its final values as
    `baseline_loss` and `baseline_lr`, so in MLflow neither curve ended at the value the summary showed.
    """
    if not prefix:
        return report
    return lambda step, metrics: report(step, prefixed(metrics, prefix))
