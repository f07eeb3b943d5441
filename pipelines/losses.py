"""Loss functions of the training loops: supervised CE, FixMatch, distribution alignment, distillation.

Every function is pure: tensors in, tensors out, no module state. The training loops in
``pipelines.training`` compose them; configs never reach this module (numbers and tensors only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-12


def supervised_loss(
    logits: Tensor,
    targets: Tensor,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Mean cross-entropy ``-sum_c y_c log softmax(z)_c`` over the batch.

    ``targets`` is either int64 class ids ``[B]`` or a distribution ``[B, C]`` (soft pseudo-labels,
    CutMix targets). ``label_smoothing`` mixes the target with the uniform distribution
    (``(1 - e) * y + e / C``). Class weights: ``class_balanced.class_balanced_loss``.
    """
    if logits.ndim != 2:
        raise ValueError(f"supervised_loss: expected logits [B, C], got shape {tuple(logits.shape)}")
    if targets.ndim == 2 and targets.shape != logits.shape:
        raise ValueError(
            f"supervised_loss: soft targets must match logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if targets.ndim == 1 and targets.dtype != torch.int64:
        raise ValueError(f"supervised_loss: hard targets must be int64 class ids, got {targets.dtype}; use .long()")
    if targets.ndim == 2:
        targets = targets.to(logits.dtype)
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def alignment_target(p_labeled: Tensor, temperature: float) -> Tensor:
    """CReST+ progressive target distribution ``p_target = normalize(p_labeled ** t)``.

    ``t = 1`` keeps the labeled (long-tailed) distribution, ``t = 0`` gives the uniform one; the
    temperature schedule (``schedules.temperature``) lowers ``t`` over generations.
    """
    if temperature < 0:
        raise ValueError(f"alignment_target: expected temperature >= 0, got {temperature}")
    if (p_labeled < 0).any() or float(p_labeled.sum()) <= 0:
        raise ValueError("alignment_target: p_labeled must be non-negative with a positive sum (a class histogram)")
    scaled = p_labeled.double() ** temperature
    return (scaled / scaled.sum()).to(p_labeled.dtype if p_labeled.is_floating_point() else torch.float32)


def align_distribution(probs: Tensor, p_model: Tensor, p_target: Tensor) -> Tensor:
    """Distribution alignment (ReMixMatch, CReST+): ``q~ = normalize(q * p_target / p_model)`` row-wise.

    ``p_model`` is the running mean of the model's predictions on weakly augmented unlabeled data;
    dividing by it and multiplying by ``p_target`` moves the pseudo-label marginal toward the target.
    """
    if probs.ndim != 2 or p_model.shape != (probs.shape[1],) or p_target.shape != (probs.shape[1],):
        raise ValueError(
            "align_distribution: expected probs [B, C] with p_model and p_target [C], got "
            f"{tuple(probs.shape)}, {tuple(p_model.shape)}, {tuple(p_target.shape)}"
        )
    aligned = probs * (p_target / p_model.clamp_min(_EPS))
    return aligned / aligned.sum(dim=1, keepdim=True).clamp_min(_EPS)


def update_moving_average(p_model: Tensor, batch_probs_mean: Tensor, momentum: float) -> Tensor:
    """``p_model <- m * p_model + (1 - m) * mean_batch(q)`` (USB's DistAlign EMA, m = 0.999). Returns a new tensor."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"update_moving_average: expected momentum in [0, 1], got {momentum}")
    return momentum * p_model + (1.0 - momentum) * batch_probs_mean


P_MODEL_ESTIMATES = ("debiased_ema", "uniform_ema")


def initial_p_model(num_classes: int, estimate: str, device: str | torch.device = "cpu") -> Tensor:
    """The running average's start: zeros for "debiased_ema" (Adam-style), the uniform vector for "uniform_ema"."""
    if estimate not in P_MODEL_ESTIMATES:
        raise ValueError(f"initial_p_model: unknown estimate {estimate!r}; expected one of {P_MODEL_ESTIMATES}")
    if estimate == "debiased_ema":
        return torch.zeros(num_classes, device=device)
    return torch.full((num_classes,), 1.0 / num_classes, device=device)


def current_p_model(running: Tensor, updates: int, momentum: float, estimate: str) -> Tensor:
    """The ``p_model`` alignment divides by, after ``updates`` calls of ``update_moving_average`` on ``running``.

    "debiased_ema": ``running`` started at zero and is divided by ``1 - m ** k`` (Adam's bias
    correction), so after k steps it is the properly weighted mean of the k batch means, however
    small k is. "uniform_ema": ``running`` itself, started at the uniform vector (USB's DistAlign);
    with m = 0.999 the start still weighs m ** k (0.55 after 600 steps), so in a short generation the
    alignment divides by a nearly uniform vector and pulls pseudo-labels toward ``p_target`` instead of
    correcting the model's own bias (docs/ALGORITHMS.md, Distribution alignment in short schedules).
    """
    if estimate == "uniform_ema":
        return running
    if estimate != "debiased_ema":
        raise ValueError(f"current_p_model: unknown estimate {estimate!r}; expected one of {P_MODEL_ESTIMATES}")
    if updates < 1:
        raise ValueError(f"current_p_model: a debiased average needs at least one update, got {updates}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"current_p_model: debiasing needs momentum in [0, 1), got {momentum}")
    return running / (1.0 - momentum**updates)


def fixmatch_targets(
    probs_weak: Tensor,
    threshold: float,
    p_model: Tensor | None = None,
    p_target: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Hard pseudo-targets ``argmax q`` and the confidence mask ``1[max q >= tau]``.

    When ``p_model`` and ``p_target`` are both given, ``q`` is first aligned
    (``align_distribution``): CReST+ applies the threshold AFTER alignment.
    Returns ``(targets int64 [B], mask float [B])``.
    """
    if (p_model is None) != (p_target is None):
        raise ValueError("fixmatch_targets: pass both p_model and p_target (alignment) or neither")
    if p_model is not None and p_target is not None:
        probs_weak = align_distribution(probs_weak, p_model, p_target)
    confidence, targets = probs_weak.max(dim=1)
    return targets, (confidence >= threshold).to(probs_weak.dtype)


def fixmatch_unlabeled_loss(
    logits_strong: Tensor,
    probs_weak: Tensor,
    threshold: float,
    p_model: Tensor | None = None,
    p_target: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """FixMatch consistency loss ``l_u = 1/(mu B) * sum_b 1[max q_b >= tau] * CE(argmax q_b, f(strong(u_b)))``.

    The divisor is the WHOLE unlabeled batch ``mu*B``, not the number of confident samples, so
    the loss grows as the model becomes confident (FixMatch eq. 4). ``probs_weak`` carries no
    gradient. Optional ``p_model``/``p_target`` align ``q`` before thresholding (CReST+).
    Returns ``(loss, mask)``.
    """
    if logits_strong.shape != probs_weak.shape:
        raise ValueError(
            f"fixmatch_unlabeled_loss: expected logits_strong and probs_weak of equal shape, "
            f"got {tuple(logits_strong.shape)} and {tuple(probs_weak.shape)}"
        )
    targets, mask = fixmatch_targets(probs_weak.detach(), threshold, p_model, p_target)
    per_sample = F.cross_entropy(logits_strong, targets, reduction="none")
    return (per_sample * mask).sum() / max(logits_strong.shape[0], 1), mask


def softened_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float, caller: str) -> Tensor:
    """``KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean, the teacher's side detached; no ``T^2``.

    Hinton's loss scales it by ``T^2``; Learning without Forgetting uses it as it is.
    """
    if temperature <= 0:
        raise ValueError(f"{caller}: expected temperature > 0, got {temperature}")
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor | None,
    temperature: float,
    alpha: float,
) -> Tensor:
    """Hinton knowledge distillation.

    ``L = (1 - a) * CE(y, softmax(z_s)) + a * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``

    The KL term is averaged over the batch ('batchmean', sum / B). The ``T^2`` factor keeps the
    soft term's gradient magnitude independent of ``T`` (the gradient of the KL w.r.t. ``z_s``
    scales as ``1/T^2`` for large ``T``). ``targets=None`` gives the pure soft term ``T^2 * KL``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation_loss: expected alpha in [0, 1], got {alpha}")
    soft = softened_kl(student_logits, teacher_logits, temperature, "distillation_loss") * temperature**2
    if targets is None:
        return soft
    return (1.0 - alpha) * supervised_loss(student_logits, targets) + alpha * soft


def class_balanced_weights(class_counts: Sequence[int], beta: float) -> Tensor:
    """Class-balanced loss weights (Cui et al. 2019) from the effective number of samples.

    ``E_n = (1 - beta^n) / (1 - beta)``, ``w_c ∝ 1 / E_{n_c} = (1 - beta) / (1 - beta^{n_c})``,
    normalized so that ``sum_c w_c = L``. ``beta = 0`` gives all-ones; ``beta -> 1`` gives ``∝ 1/n_c``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"class_balanced_weights: expected beta in [0, 1), got {beta}; typical values 0.9..0.9999")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.numel() == 0 or (counts <= 0).any():
        raise ValueError(
            f"class_balanced_weights: expected a positive count for every class, got {list(class_counts)}; "
            "drop empty classes or add samples"
        )
    raw = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return (raw / raw.sum() * counts.numel()).float()
