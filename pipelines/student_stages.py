"""Stage bodies of Knowledge Evolution, Noisy Student and distillation (CReST's live in `stages`).

Same conventions as `pipelines.stages`: every body is `(ctx, inputs, params) -> StageResult`,
artifacts are addressed by role through `params["io"]`, and configs stop here: the training
loop, losses, masks and samplers receive numbers and tensors. Helpers (dataset cache, split
table, checkpoints, the CReST evaluation) are imported from `stages`, not rewritten.

One train body serves the three methods; which roles the builder wires decides what it does:
`previous` + `masks` (KE: continue from the last checkpoint, re-initialise the reset
hypothesis), `picks` + `pseudo_labels` (Noisy Student: the filtered pseudo-labeled set),
`teacher` (distillation: the teacher's logits enter the loss).
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
from pipelines import stages
from pipelines.augment import weak_augment
from pipelines.data import load_labels
from pipelines.evaluation import class_metrics
from pipelines.knowledge_evolution import (
    extract_slim_network,
    fit_fraction,
    make_split_masks,
    masks_from_state,
    masks_to_state,
    reinitialize_reset_hypothesis,
)
from pipelines.losses import class_balanced_weights
from pipelines.models import create_model, parameter_count
from pipelines.pseudo_label import picks_table, predict_probs, probs_view, to_table
from pipelines.sampling import filter_and_balance
from pipelines.split import split_table
from pipelines.student_training import StudentSettings, train_student

log = logging.getLogger(__name__)

TAIL_FRACTION = 0.3


def _prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """Metric names of a side branch (`baseline_...`), so they never collide with the generation's own."""
    return {f"{prefix}{key}": value for key, value in metrics.items()}


# --- data -------------------------------------------------------------------------------------


def split_supervised(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """The CReST split table (`split.split_table`) without demanding an unlabeled subset.

    KE and distillation train on `labeled` (all of it with data.labeled_fraction 1 and
    data.imbalance_ratio 1: a plain balanced supervised set) and report on `test`.
    """
    data = params["data"]
    table = split_table(data, load_labels(data["name"], data.get("root")))
    subsets = np.asarray(table.column("subset").to_pylist())
    metrics = {f"{name}_size": float(np.sum(subsets == name)) for name in ("labeled", "unlabeled", "test")}
    return StageResult(outputs={stages.output_name(params, "split"): table}, metrics=metrics)


def _augment_fn(kind: str, augment: Mapping[str, Any]) -> Any:
    """The input noise of a training stage: none, weak (flip + crop) or strong (+ RandAugment, Cutout)."""
    if kind == "none":
        return None
    if kind == "weak":
        weak = augment["weak"]
        return functools.partial(weak_augment, flip=weak["flip"], pad_fraction=weak["pad_fraction"])
    return stages.augmenters(augment)[1]


# --- Knowledge Evolution: masks -----------------------------------------------------------


def make_masks(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Draw the fit/reset split ONCE (generation 0); every later generation loads this artifact."""
    data, model_cfg, ke = params["data"], params["model"], params["ke"]
    _, images, _ = stages.subset_images(data, stages.artifact(inputs, params, "split"), "labeled")
    model = create_model(model_cfg["name"], stages.num_classes_of(data), int(images.shape[1]), model_cfg["dropout"])
    masks = make_split_masks(model, ke["split_rate"], ke["split_mode"], stages.stage_generator(ctx))
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    state = {"masks": masks_to_state(masks), "split_rate": ke["split_rate"], "split_mode": ke["split_mode"], "model": model_cfg["name"]}
    metrics = {"fit_fraction": kept / total, "masked_tensors": float(len(masks)), "masked_values": float(total)}
    log.debug("fit fraction per tensor: %s", fit_fraction(masks))
    return StageResult(outputs={stages.output_name(params, "masks"): state}, metrics=metrics)


def zero_reset_hypothesis(model: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the reset hypothesis in place: Dense-Sparse-Dense's re-dense start (ALGORITHMS.md 8)."""
    with torch.no_grad():
        for name, mask in masks.items():
            param = model.get_parameter(name)
            param.mul_(mask.to(param.device, param.dtype))


def _initial_model(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any], in_channels: int) -> torch.nn.Module:
    """A fresh network, or (KE, generation > 0) the previous LAST checkpoint with its reset hypothesis redrawn."""
    model_cfg = params["model"]
    previous = stages.artifact(inputs, params, "previous")
    if previous is None:
        num_classes = stages.num_classes_of(params["data"])
        return create_model(model_cfg["name"], num_classes, in_channels, model_cfg["dropout"], model_cfg["stochastic_depth"]).to(ctx.device)
    model = stages.load_model(previous, ctx.device, model_cfg["stochastic_depth"])
    masks = masks_from_state(stages.artifact(inputs, params, "masks")["masks"])
    if params["ke"]["reinit"] == "zero":
        zero_reset_hypothesis(model, masks)
    else:
        reinitialize_reset_hypothesis(model, masks, torch.Generator().manual_seed(ctx.seed + 1))  # apart from the batch stream
    return model


# --- training -----------------------------------------------------------------------------


def student_settings(train: Mapping[str, Any], noisy: Mapping[str, Any] | None, distill: Mapping[str, Any] | None) -> StudentSettings:
    """The loop's settings: the train section plus the Noisy Student or distillation knobs in play."""
    extra: dict[str, Any] = {}
    if noisy is not None:
        extra = {"unlabel_ratio": noisy["unlabel_ratio"], "pseudo_batch_ratio": noisy["pseudo_batch_ratio"],
                 "pseudo_label_smoothing": noisy["label_smoothing"], "temperature": noisy["temperature"]}
    if distill is not None:
        extra = {"temperature": distill["temperature"], "alpha": distill["alpha"]}
    return StudentSettings(
        steps=train["steps"], batch_size=train["batch_size"], lr=train["lr"], momentum=train["momentum"],
        nesterov=train["nesterov"], weight_decay=train["weight_decay"], schedule=train["schedule"],
        warmup_steps=train["warmup_steps"], label_smoothing=train["label_smoothing"],
        cutmix_alpha=train["cutmix_alpha"], ema_decay=train["ema_decay"], **extra,
    )


def pseudo_labeled_set(data: Mapping[str, Any], picks: pa.Table, pseudo_labels: pa.Table, label_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of the picks (duplicates kept: that is the balancing) with hard labels or the teacher's probs."""
    train_images = stages.dataset_of(data).train.images
    ids = np.array(picks.column("sample_id").to_numpy(), dtype=np.int64)  # a writable copy for torch
    images = train_images[torch.from_numpy(ids)]
    if label_type == "hard":
        return images, torch.from_numpy(picks.column("label").to_numpy().astype(np.int64))
    row_of = {int(sample): row for row, sample in enumerate(pseudo_labels.column("sample_id").to_numpy())}
    rows = np.fromiter((row_of[int(sample)] for sample in ids), dtype=np.int64, count=len(ids))
    return images, torch.from_numpy(np.array(probs_view(pseudo_labels)[rows], dtype=np.float32))


def _class_weights(train: Mapping[str, Any], split: pa.Table, num_classes: int) -> torch.Tensor | None:
    """Class-balanced CE weights from the labeled counts (effective number of samples), or None when off."""
    if train["class_balanced_beta"] <= 0:
        return None
    return class_balanced_weights(stages.labeled_class_counts(split, num_classes).tolist(), train["class_balanced_beta"])


def train_network(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train one generation's network (KE generation, Noisy Student teacher/student, distillation teacher/student)."""
    generator = stages.stage_generator(ctx)
    data, model_cfg, train = params["data"], params["model"], params["train"]
    split = stages.artifact(inputs, params, "split")
    _, images, targets = stages.subset_images(data, split, "labeled")
    num_classes, in_channels = stages.num_classes_of(data), int(images.shape[1])
    model = _initial_model(ctx, inputs, params, in_channels)
    pseudo_images = pseudo_targets = None
    picks = stages.artifact(inputs, params, "picks")
    if picks is not None and picks.num_rows > 0:
        pseudo_images, pseudo_targets = pseudo_labeled_set(data, picks, stages.artifact(inputs, params, "pseudo_labels"), params["noisy"]["label_type"])
    teacher_ckpt = stages.artifact(inputs, params, "teacher")
    teacher = None if teacher_ckpt is None else stages.load_model(teacher_ckpt, ctx.device)
    trained = train_student(
        model, images, targets, num_classes, student_settings(train, params.get("noisy"), params.get("distill")),
        _augment_fn(train["augment"], params["augment"]), ctx.device, generator,
        pseudo_images=pseudo_images, pseudo_targets=pseudo_targets, teacher=teacher,
        class_weights=_class_weights(train, split, num_classes), report=ctx.report, report_every=train["report_every"],
    )
    checkpoint = stages.model_checkpoint(trained, model_cfg["name"], num_classes, in_channels, model_cfg["dropout"])
    metrics = {"labeled_size": float(len(targets)), "pseudo_size": 0.0 if pseudo_images is None else float(len(pseudo_images)),
               "params": float(parameter_count(trained)), "steps": float(train["steps"])}
    if ctx.series:
        metrics.update(ctx.series[-1][1])
    prefix = params.get("metric_prefix", "")
    return StageResult(outputs={stages.output_name(params, "model"): checkpoint}, metrics=_prefixed(metrics, prefix))


# --- evaluation -----------------------------------------------------------------------------


def _slim_metrics(model: torch.nn.Module, masks_state: Mapping[str, Any], images: torch.Tensor, labels: torch.Tensor,
                  num_classes: int, batch_size: int, device: str) -> dict[str, float]:
    """KELS: cut the fit hypothesis out as a slim dense network and score it (the paper does so every generation)."""
    slim = extract_slim_network(model, masks_from_state(masks_state["masks"])).to(device)
    probs = predict_probs(slim, images, batch_size, device)
    result = class_metrics(probs.argmax(axis=1), labels.numpy(), num_classes)
    return {"slim_accuracy": float(result["accuracy"]), "slim_balanced_accuracy": float(result["balanced_accuracy"]),
            "slim_params": float(parameter_count(slim))}


def evaluate_network(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """CReST's evaluation (balanced accuracy, per-class recall, plots) plus size, and the slim network for KELS."""
    result = stages.evaluate_generation(ctx, inputs, {**params, "tail_fraction": params.get("tail_fraction", TAIL_FRACTION)})
    checkpoint = stages.artifact(inputs, params, "model")
    model = stages.load_model(checkpoint, ctx.device)
    metrics = dict(result.metrics)
    metrics["dense_params"] = float(parameter_count(model))
    masks_state = stages.artifact(inputs, params, "masks")
    if masks_state is not None and masks_state["split_mode"] == "kels":
        data = params["data"]
        _, images, labels = stages.subset_images(data, stages.artifact(inputs, params, "split"), "test")
        metrics.update(_slim_metrics(model, masks_state, images, labels, stages.num_classes_of(data), params["batch_size"], ctx.device))
    return StageResult(outputs=result.outputs, metrics=_prefixed(metrics, params.get("metric_prefix", "")), files=result.files)


# --- Noisy Student: pseudo-labels and filtering -----------------------------------------------


def pseudo_label_network(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """The un-noised teacher (eval mode, clean inputs) labels the unlabeled split with softmax(z / T)."""
    data, generation = params["data"], params["generation"]
    split = stages.artifact(inputs, params, "split")
    checkpoint = stages.artifact(inputs, params, "model")
    ids, images, truth = stages.subset_images(data, split, "unlabeled")
    probs = predict_probs(stages.load_model(checkpoint, ctx.device), images, params["batch_size"], ctx.device, params["temperature"])
    table = to_table(ids, probs, generation, f"{checkpoint['model']}@g{generation:02d}")
    metrics = {
        "accuracy": float(np.mean(probs.argmax(axis=1) == truth.numpy())),
        "mean_confidence": float(probs.max(axis=1).mean()),
        "rows": float(len(ids)),
    }
    return StageResult(outputs={stages.output_name(params, "pseudo_labels"): table}, metrics=metrics)


def filter_pseudo_labels(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Noisy Student's data balancing: drop confidence < min, keep the top K per class, duplicate up to K."""
    data = params["data"]
    split = stages.artifact(inputs, params, "split")
    table = stages.artifact(inputs, params, "pseudo_labels")
    num_classes = stages.num_classes_of(data)
    per_class = params["per_class"] or max(1, table.num_rows // num_classes)
    pred = table.column("pred_class").to_numpy().astype(np.int64)
    confidence = table.column("confidence").to_numpy()
    rows = filter_and_balance(pred, confidence, num_classes, params["min_confidence"], per_class, np.random.default_rng(ctx.seed))
    ids = table.column("sample_id").to_numpy()[rows]
    picks = picks_table(ids, pred[rows], confidence[rows], params["generation"])
    truth = dict(zip(*stages.subset_arrays(split, "unlabeled")))
    correct = [truth[int(i)] == int(p) for i, p in zip(ids, pred[rows])]
    kept = np.bincount(pred[rows], minlength=num_classes)
    metrics = {f"kept/{c}": float(k) for c, k in enumerate(kept)}
    metrics.update({"kept_total": float(len(rows)), "kept_unique": float(len(np.unique(rows))), "per_class": float(per_class),
                    "dropped_low_confidence": float(np.sum(confidence < params["min_confidence"])),
                    "picks_accuracy": float(np.mean(correct)) if correct else 0.0})
    return StageResult(outputs={stages.output_name(params, "picks"): picks}, metrics=metrics)
