"""Per-class evaluation on a balanced test set: accuracy, balanced accuracy, recall, precision, confusion.

Long-tailed SSL is judged by balanced accuracy (mean per-class recall) and by the tail classes'
recall, since plain accuracy on an imbalanced set hides a model that ignores rare classes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm
from torch import nn

from pipelines.datasets.image_source import ImageSource
from pipelines.pseudo_label import predict_probs
from pipelines.sampling import classes_rarest_first


def class_metrics(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class recall / precision and the confusion matrix (scikit-learn's).

    ``recall_c = M[c, c] / sum_j M[c, j]`` and ``precision_c = M[c, c] / sum_i M[i, c]``, 0.0 for a
    class absent from ``labels`` (recall) or never predicted (precision) (``zero_division=0``), so
    every per-class vector holds ``num_classes`` finite numbers. ``balanced_accuracy`` is the mean
    recall over the classes present in ``labels`` (scikit-learn's ``balanced_accuracy_score``): an
    absent class neither counts as 0 nor as 1. ``confusion[i][j]`` counts true ``i`` predicted ``j``.
    """
    preds = np.asarray(preds, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if preds.shape != labels.shape or preds.ndim != 1:
        raise ValueError(
            f"class_metrics: expected 1-D preds and labels of equal length, got {preds.shape}, {labels.shape}"
        )
    if preds.size == 0:
        raise ValueError("class_metrics: got 0 samples; expected at least one labeled prediction")
    for name, values in (("preds", preds), ("labels", labels)):
        if values.min() < 0 or values.max() >= num_classes:
            raise ValueError(
                f"class_metrics: expected {name} in [0, {num_classes}), got [{values.min()}, {values.max()}]"
            )
    classes = np.arange(num_classes)
    recall = skm.recall_score(labels, preds, labels=classes, average=None, zero_division=0.0)
    precision = skm.precision_score(labels, preds, labels=classes, average=None, zero_division=0.0)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": exactly the case it averages out
        warnings.simplefilter("ignore", UserWarning)
        balanced = skm.balanced_accuracy_score(labels, preds)
    return {
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "balanced_accuracy": float(balanced),
        "recall": [float(r) for r in recall],
        "precision": [float(p) for p in precision],
        "confusion": skm.confusion_matrix(labels, preds, labels=classes).tolist(),
    }


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor | ImageSource,
    labels: torch.Tensor | np.ndarray,
    num_classes: int,
    device: str | torch.device,
    batch_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """``class_metrics`` of the model's argmax predictions on clean uint8 images (eval mode), from a tensor or a source."""
    probs = predict_probs(model, images, batch_size, device, progress=progress)
    labels_np = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return class_metrics(probs.argmax(axis=1), labels_np, num_classes)


def tail_classes(
    class_counts: Sequence[int], fraction: float = 0.3, tiebreak: Sequence[int] | None = None
) -> list[int]:
    """The ``ceil(fraction * L)`` least frequent class ids, rarest first; none when every class ties.

    Ranked by ``class_counts``; ties by ``tiebreak`` (each class's whole training count, labeled +
    unlabeled: with 10% labels a class of 28 images and one of 21 both get 3 labels, and the tail
    is the smaller one whatever their ids), then by id: ``sampling.classes_rarest_first``, the
    ranking CReST's rates use too. Balanced data has no tail: ranked by id
    alone, KE's and distillation's "tail recall" was the recall of classes 0-2.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tail_classes: expected fraction in (0, 1], got {fraction}")
    counts = np.asarray(class_counts)
    second = np.zeros_like(counts) if tiebreak is None else np.asarray(tiebreak)
    if second.shape != counts.shape:
        raise ValueError(f"tail_classes: expected tiebreak of {counts.size} counts, got {second.size}")
    if counts.size and np.all(counts == counts[0]) and np.all(second == second[0]):
        return []
    take = math.ceil(fraction * counts.size - 1e-9)  # 0.07 * 100 is 7.000000000000001 in floats
    return [int(c) for c in classes_rarest_first(counts, second)[:take]]
