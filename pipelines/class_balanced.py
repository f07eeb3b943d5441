"""Class-balanced losses (Cui et al., CVPR 2019): softmax CE, per-class sigmoid CE and sigmoid focal loss.

The class weight ``w_y = (1 - beta) / (1 - beta ** n_y)`` (``losses.class_balanced_weights``,
normalised to sum to the number of classes) multiplies the loss of every sample of class ``y``:

    CB_softmax = w_y * -log softmax(z)_y
    CB_sigmoid = w_y * sum_c -log sigmoid(z_c^t)
    CB_focal   = w_y * sum_c -(1 - p_c^t) ** gamma * log p_c^t,   p_c^t = sigmoid(z_c^t)

with ``z_c^t = z_c`` for the true class and ``-z_c`` for the others (the paper's eq. 5-7). The
sigmoid and focal forms sum over classes and average over the batch, as the equations read; the
official TensorFlow code averages the sigmoid form over batch x classes instead (a constant factor
of C). ``ce`` takes the batch mean of ``w_y * CE`` as the paper's equation reads, not torch's
weighted mean (``sum(w_y * CE) / sum(w_y)``), under which a batch of rare-class samples would
weigh no more than one of frequent-class samples. Tensors in, tensors out: no config reaches here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.losses import supervised_loss

LOSSES = ("ce", "focal", "sigmoid")


def dense_targets(targets: Tensor, num_classes: int) -> Tensor:
    """Hard class ids ``[B]`` or soft rows ``[B, C]`` as float rows ``[B, C]``."""
    return F.one_hot(targets, num_classes).float() if targets.ndim == 1 else targets.float()


def focal_terms(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """``-(1 - p_t) ** gamma * log p_t`` per sample and class ``[B, C]``; ``gamma`` 0 is the plain sigmoid CE.

    ``-log p_t`` is BCE-with-logits (stable for any logit); ``1 - p_t = -expm1(log p_t)`` keeps the
    modulating factor accurate when ``p_t`` is close to 1. With soft targets ``y`` it is the BCE
    against ``y`` and ``p_t = exp(-BCE)``.
    """
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if gamma == 0.0:
        return bce
    return (-torch.expm1(-bce)).clamp_min(0.0).pow(gamma) * bce


def class_balanced_loss(
    logits: Tensor,
    targets: Tensor,
    kind: str,
    class_weights: Tensor | None = None,
    gamma: float = 0.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The batch loss of ``kind`` ("ce", "sigmoid", "focal"), each sample weighted by its class weight.

    ``class_weights`` None means every weight is 1 (plain CE, sigmoid CE or focal loss). Soft target
    rows weight a sample by ``sum_c y_c w_c``.
    """
    if kind not in LOSSES:
        raise ValueError(f"class_balanced_loss: unknown loss {kind!r}; valid: {', '.join(LOSSES)}")
    if kind == "ce" and class_weights is None:
        return supervised_loss(logits, targets, label_smoothing)
    if gamma < 0:
        raise ValueError(f"class_balanced_loss: expected gamma >= 0, got {gamma}; the paper uses 0.5 to 2")
    rows = dense_targets(targets, logits.shape[1]).to(logits.device)
    smoothed = rows * (1.0 - label_smoothing) + label_smoothing / logits.shape[1]
    if kind == "ce":  # the batch mean of w_y * CE (the paper's), not torch's sum(w_y * CE) / sum(w_y)
        per_sample = -(smoothed * F.log_softmax(logits, dim=1)).sum(dim=1)
    else:
        per_sample = focal_terms(logits, smoothed, gamma if kind == "focal" else 0.0).sum(dim=1)
    if class_weights is not None:  # the weight of the true class, never of the smoothing mass
        per_sample = per_sample * (rows @ class_weights.to(device=logits.device, dtype=rows.dtype))
    return per_sample.mean()
