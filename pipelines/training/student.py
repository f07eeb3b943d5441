"""The training loop of Knowledge Evolution, Noisy Student and distillation: one explicit loop.

FixMatch (``training.fixmatch``) covers a labeled and an unlabeled stream with weak and strong
views. These three methods need something else in the same step: CutMix (which mixes the targets,
not only the images), a second pseudo-labeled stream weighted by ``unlabel_ratio`` (Noisy
Student), and a frozen teacher whose logits enter the loss (Hinton distillation). Rather than
hooks on the FixMatch loop, this module is a second loop that reads top to bottom (torchtune's
"prefer duplication over the wrong abstraction"); what both loops share lives in
``training.common``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines.augment import cutmix
from pipelines.class_balanced import class_balanced_loss
from pipelines.datasets.image_source import ImageSource, as_source
from pipelines.losses import distillation_loss, supervised_loss
from pipelines.models import to_float
from pipelines.schedules import learning_rate
from pipelines.training.common import (
    Augment,
    FiniteWatch,
    LossWindow,
    ModelEMA,
    Progress,
    Report,
    backbone_scale,
    check_images,
    check_targets,
    index_stream,
    set_lr,
    sgd,
)


@dataclass(frozen=True)
class StudentSettings:
    """Optimisation and loss knobs of ``train_student``.

    ``cutmix_alpha`` 0 turns CutMix off. ``pseudo_batch_ratio`` pseudo-labeled images per labeled
    image in a step (the official Noisy Student code's batch-size ratio); ``unlabel_ratio`` weights
    their loss (docs/ALGORITHMS.md, Noisy Student: labeled loss + unlabel_ratio * unlabeled loss).
    ``temperature``/``alpha``: Hinton distillation only. Soft pseudo-labels arrive already tempered
    (the table stores the teacher's ``softmax(z_t / T)``) and the student fits them untempered.
    ``pseudo_label_smoothing`` applies to HARD pseudo-labels only (0.1 in Noisy Student). ``loss`` is
    the labeled loss, "ce", "sigmoid" or "focal" (``focal_gamma``), class-balanced by the class
    weights (pipelines.class_balanced). ``freeze_backbone_steps`` / ``backbone_lr_scale``: transfer
    learning (``training.common.backbone_scale``). Values are not checked again here: the config
    sections they come from (``train``, ``noisy``, ``distill``) bound every one when the file is
    loaded, and the stage builds these settings from them.

    The stage fills every field (pipelines.stages.common.settings_from refuses one it cannot, and
    a stage without pseudo-labels or teacher passes values that play no part). The defaults, for
    code that builds these settings directly, are the config's own: the supervised `train`
    section's (the KE paper's, docs/ALGORITHMS.md, Knowledge Evolution; ``label_smoothing`` 0.1 is
    its value for ``loss`` "ce"), `noisy`'s for the pseudo-label knobs, `distill`'s ``alpha``, and
    `init`'s. Only ``temperature`` differs: 1.0 (no softening) here, where `distill.temperature` is
    4.0; it is read with a teacher only, `noisy.temperature` being in the stored soft labels already.
    """

    steps: int
    batch_size: int = 32
    lr: float = 0.256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0
    label_smoothing: float = 0.1
    cutmix_alpha: float = 0.0
    ema_decay: float | None = None
    pseudo_batch_ratio: int = 1
    unlabel_ratio: float = 1.0
    pseudo_label_smoothing: float = 0.1
    temperature: float = 1.0
    alpha: float = 0.9
    loss: str = "ce"
    focal_gamma: float = 1.0
    freeze_backbone_steps: int = 0
    backbone_lr_scale: float = 1.0


def labeled_loss(
    logits: Tensor,
    targets: Tensor,
    teacher_logits: Tensor | None,
    settings: StudentSettings,
    class_weights: Tensor | None,
) -> Tensor:
    """The labeled loss (``settings.loss``, class-balanced), or Hinton's ``(1 - a) CE + a T^2 KL`` with a teacher.

    Written as ``(1 - a) * labeled + a * distillation_loss(targets=None)`` so label smoothing
    and class weights still reach the hard term; with neither (and ``loss`` "ce") it equals
    ``distillation_loss(z_s, z_t, y, T, a)`` exactly.
    """
    hard = class_balanced_loss(
        logits, targets, settings.loss, class_weights, settings.focal_gamma, settings.label_smoothing
    )
    if teacher_logits is None:
        return hard
    soft = distillation_loss(logits, teacher_logits, None, settings.temperature, 1.0)
    return (1.0 - settings.alpha) * hard + settings.alpha * soft


def pseudo_loss(logits: Tensor, targets: Tensor, settings: StudentSettings) -> Tensor:
    """Noisy Student's unlabeled term: CE with smoothed hard labels, or the soft CE to soft labels.

    Soft: ``-sum p log softmax(z_s)``, batch mean, with ``p`` the stored ``softmax(z_t / T)`` and the
    student's plain logits, as the official Noisy Student code trains. Its minimiser is
    ``softmax(z_s) = p``, so ``noisy.temperature`` above 1 softens what the student learns; a
    ``T^2 KL`` with the student tempered too would lead it back to ``softmax(z_t)`` whatever ``T``.
    """
    if targets.ndim == 1:
        return supervised_loss(logits, targets, settings.pseudo_label_smoothing)
    return F.cross_entropy(logits, targets.to(logits.device, logits.dtype))


def _labeled_batch(
    images: Tensor, targets: Tensor, num_classes: int, settings: StudentSettings, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Float images and targets of the labeled batch, CutMix applied when ``cutmix_alpha > 0``."""
    if settings.cutmix_alpha <= 0:
        return images, targets
    dense = F.one_hot(targets, num_classes).float() if targets.ndim == 1 else targets.float()
    return cutmix(images, dense, settings.cutmix_alpha, generator)


def train_student(
    model: nn.Module,
    images: Tensor | ImageSource,
    targets: Tensor,
    num_classes: int,
    settings: StudentSettings,
    augment_fn: Augment | None,
    device: str | torch.device,
    generator: torch.Generator,
    pseudo_images: Tensor | ImageSource | None = None,
    pseudo_targets: Tensor | None = None,
    teacher: nn.Module | None = None,
    class_weights: Tensor | None = None,
    report: Report | None = None,
    report_every: int = 50,
    progress: Progress | None = None,
) -> nn.Module:
    """Train ``model`` in place; return it (or its EMA) in eval mode.

    Each step: B labeled images (optionally CutMix-ed) and, when pseudo-labels are given,
    ``pseudo_batch_ratio * B`` pseudo-labeled ones, both through ``augment_fn`` (the student's input
    noise) and ONE forward (joint BatchNorm statistics, as Noisy Student's code does).
    ``loss = labeled_loss + unlabel_ratio * pseudo_loss``; the teacher (eval mode, no gradient) sees
    the same augmented labeled batch. SGD with no decay on BN/bias, LR from ``schedules.learning_rate``.
    ``report(step, {loss, loss_x, loss_u, lr})`` every ``report_every`` steps and at the last (``loss_u``
    only with pseudo-labels: a supervised run's would be a curve of zeros);
    ``progress`` hears of every step, with the reported loss.
    """
    check_images("train_student", images, what="labeled ")
    check_targets("train_student", targets, len(images), num_classes, what="labeled ")
    has_pseudo = pseudo_images is not None and pseudo_targets is not None and len(pseudo_images) > 0
    if has_pseudo:
        check_images("train_student", pseudo_images, what="pseudo-labeled ")
        check_targets("train_student", pseudo_targets, len(pseudo_images), num_classes, what="pseudo-labeled ")
        pseudo_images = as_source(pseudo_images)
    images = as_source(images)
    learning_rate(settings.schedule, 0, settings.steps, settings.lr, settings.warmup_steps)  # unknown names fail first
    weights = None if class_weights is None else class_weights.to(device)
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    optimizer = sgd(model, settings.lr, settings.momentum, settings.nesterov, settings.weight_decay)
    ema = ModelEMA(model, settings.ema_decay) if settings.ema_decay is not None else None
    batch, pseudo_batch = settings.batch_size, settings.batch_size * settings.pseudo_batch_ratio
    labeled_stream = index_stream(images, batch, generator)
    pseudo_stream = index_stream(pseudo_images, pseudo_batch, generator) if has_pseudo else None
    watch = FiniteWatch("train_student", settings.steps, device)
    names = ("loss", "loss_x", "loss_u") if has_pseudo else ("loss", "loss_x")  # no pseudo-labels: loss_u is 0
    window = LossWindow(names, settings.steps, report, report_every, progress, watch)
    for step in range(settings.steps):
        lr = learning_rate(settings.schedule, step, settings.steps, settings.lr, settings.warmup_steps)
        set_lr(optimizer, lr, backbone_scale(step, settings.freeze_backbone_steps, settings.backbone_lr_scale))
        idx = labeled_stream.next()
        raw = images.fetch(idx, labeled_stream.pool)
        raw = raw if augment_fn is None else augment_fn(raw)
        x, y = _labeled_batch(
            to_float(raw.to(device, non_blocking=True)),
            targets[idx].to(device, non_blocking=True),
            num_classes,
            settings,
            generator,
        )
        inputs = [x]
        if pseudo_stream is not None:
            idx_u = pseudo_stream.next()
            raw_u = pseudo_images.fetch(idx_u, pseudo_stream.pool)
            raw_u = raw_u if augment_fn is None else augment_fn(raw_u)
            inputs.append(to_float(raw_u.to(device, non_blocking=True)))
        logits = model(torch.cat(inputs))
        logits_x, logits_u = logits[:batch], logits[batch:]
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(x).float()
        loss_x = labeled_loss(logits_x, y, teacher_logits, settings, weights)
        loss_u = torch.zeros((), device=device)
        if pseudo_stream is not None:
            loss_u = pseudo_loss(logits_u, pseudo_targets[idx_u].to(device, non_blocking=True), settings)
        loss = loss_x + settings.unlabel_ratio * loss_u
        watch.observe(loss, step + 1, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(model)
        window.add(step, torch.stack([loss, loss_x, loss_u][: len(names)]), lr)
    return (ema.module if ema is not None else model).eval()
