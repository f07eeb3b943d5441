"""Per-class evaluation on a balanced test set: accuracy, balanced accuracy, recall, precision, confusion.

Long-tailed SSL is judged by balanced accuracy (mean per-class recall) and by the tail classes'
recall, since plain accuracy on an imbalanced set hides a model that ignores rare classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.datasets.image_source import ImageSource
from pipelines.pseudo_label import predict_probs


def confusion_matrix(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (int64 ``[C, C]``)."""
    preds = np.asarray(preds, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if preds.shape != labels.shape or preds.ndim != 1:
        raise ValueError(
            f"confusion_matrix: expected 1-D preds and labels of equal length, got {preds.shape}, {labels.shape}"
        )
    for name, values in (("preds", preds), ("labels", labels)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"confusion_matrix: expected {name} in [0, {num_classes}), got [{values.min()}, {values.max()}]"
            )
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def class_metrics(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy and per-class recall / precision from hard predictions.

    ``recall_c = M[c, c] / sum_j M[c, j]`` (NaN for a class absent from ``labels``);
    ``balanced_accuracy = mean_c recall_c`` over the classes present in ``labels``;
    ``precision_c = M[c, c] / sum_i M[i, c]`` (0.0 for a class never predicted, as scikit-learn).
    """
    confusion = confusion_matrix(preds, labels, num_classes)
    if confusion.sum() == 0:
        raise ValueError("class_metrics: got 0 samples; expected at least one labeled prediction")
    correct = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    recall = np.where(support > 0, correct / np.maximum(support, 1), np.nan)
    precision = np.where(predicted > 0, correct / np.maximum(predicted, 1), 0.0)
    return {
        "accuracy": float(correct.sum() / confusion.sum()),
        "balanced_accuracy": float(np.nanmean(recall)),
        "recall": [float(r) for r in recall],
        "precision": [float(p) for p in precision],
        "confusion": confusion.tolist(),
    }


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor | ImageSource,
    labels: torch.Tensor | np.ndarray,
    num_classes: int,
    device: str | torch.device,
    batch_size: int = 512,
) -> dict[str, Any]:
    """``class_metrics`` of the model's argmax predictions on clean uint8 images (eval mode), from a tensor or a source."""
    probs = predict_probs(model, images, batch_size, device)
    labels_np = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return class_metrics(probs.argmax(axis=1), labels_np, num_classes)


def tail_classes(
    class_counts: Sequence[int], fraction: float = 0.3, tiebreak: Sequence[int] | None = None
) -> list[int]:
    """The ``ceil(fraction * L)`` least frequent class ids, rarest first.

    Ranked by ``class_counts``; ties by ``tiebreak`` (each class's whole training count, labeled +
    unlabeled: with 10% labels a class of 28 images and one of 21 both get 3 labels, and the tail
    is the smaller one whatever their ids), then by id.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tail_classes: expected fraction in (0, 1], got {fraction}")
    counts = np.asarray(class_counts)
    second = np.zeros_like(counts) if tiebreak is None else np.asarray(tiebreak)
    if second.shape != counts.shape:
        raise ValueError(f"tail_classes: expected tiebreak of {counts.size} counts, got {second.size}")
    take = math.ceil(fraction * counts.size - 1e-9)  # 0.07 * 100 is 7.000000000000001 in floats
    return [int(c) for c in np.lexsort((np.arange(counts.size), second, counts))[:take]]
