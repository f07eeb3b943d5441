"""The Learning without Forgetting loop, and its two baselines, fine-tuning and joint training: one explicit function.

The network is ``lwf.TwoHeads``: shared layers, the old task's head and a new head. Each step draws
B images of the new task and, by ``mode``:

- "lwf": ``L = CE(y_n, new head) + lambda_o * KL(softmax(y_o / T) || softmax(old head / T))`` with
  ``y_o`` the old network's outputs on those images, recorded before training (``pipelines.lwf``);
- "finetune": ``L = CE(y_n, new head)`` with the old head frozen: the shared layers drift and the old
  task is forgotten (the paper's fine-tuning baseline);
- "joint": B old-task images join the batch, ``L = CE(y_n, new head) + CE(y_o, old head)`` on their
  own images (the upper bound, which needs the old task's data).

``freeze_backbone_steps`` is the paper's warm-up: only the new head trains at first (shared layers
and old head frozen through their learning rate), then everything at ``backbone_lr_scale`` times the
rate. SGD with no decay on BN/bias, LR from ``schedules.learning_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.lwf import TwoHeads, lwf_loss
from pipelines.models import to_float
from pipelines.schedules import learning_rate
from pipelines.training.common import (
    Augment,
    FiniteWatch,
    LossWindow,
    Progress,
    Report,
    backbone_scale,
    check_images,
    check_targets,
    random_batches,
    set_lr,
    sgd,
)

MODES = ("lwf", "finetune", "joint")
NEW_HEAD = "new_head"  # TwoHeads' new classifier: what trains during the warm-up


@dataclass(frozen=True)
class LwfSettings:
    """Optimisation and loss knobs of ``train_lwf`` (bounds checked on the config sections they come from).

    The stage fills every field from the config (pipelines.stages.common.settings_from refuses one
    it cannot); the defaults, for code that builds these settings directly, are the config's own:
    LwF's `train`, `lwf` and `init` sections'. ``mode`` has no config key: it is the branch the
    builder made (lwf, or the finetune and joint baselines).
    """

    steps: int
    mode: str = "lwf"
    batch_size: int = 32
    lr: float = 0.256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0
    lambda_old: float = 1.0
    temperature: float = 2.0
    freeze_backbone_steps: int = 0
    backbone_lr_scale: float = 1.0


def _augmented(images: Tensor, augment_fn: Augment | None, device: str | torch.device) -> Tensor:
    return to_float((images if augment_fn is None else augment_fn(images)).to(device, non_blocking=True))


def train_lwf(
    network: TwoHeads,
    new_images: Tensor,
    new_targets: Tensor,
    settings: LwfSettings,
    augment_fn: Augment | None,
    device: str | torch.device,
    generator: torch.Generator,
    recorded: Tensor | None = None,
    old_images: Tensor | None = None,
    old_targets: Tensor | None = None,
    report: Report | None = None,
    report_every: int = 50,
    progress: Progress | None = None,
) -> TwoHeads:
    """Train ``network`` in place by ``settings.mode`` (module docstring); return it in eval mode.

    ``recorded`` (float ``[N, C_old]``, row i for ``new_images[i]``) is needed by "lwf", the old
    task's images and targets by "joint". ``report(step, {loss, loss_new, loss_old, lr})``; ``progress``
    hears of every step.
    """
    if settings.mode not in MODES:
        raise ValueError(f"train_lwf: unknown mode {settings.mode!r}; valid: {', '.join(MODES)}")
    check_images("train_lwf", new_images, what="new-task ")
    check_targets("train_lwf", new_targets, new_images.shape[0], network.new_head.out_features, what="new-task ")
    if settings.mode == "lwf" and (recorded is None or recorded.shape != (len(new_images), network.old_classes)):
        raise ValueError(
            f"train_lwf: mode lwf needs the old network's outputs on the {len(new_images)} new-task images as "
            f"[{len(new_images)}, {network.old_classes}], got {None if recorded is None else tuple(recorded.shape)}"
        )
    if settings.mode == "joint":
        if old_images is None or old_targets is None:
            raise ValueError("train_lwf: mode joint needs the old task's images and targets")
        check_images("train_lwf", old_images, what="old-task ")
        check_targets("train_lwf", old_targets, old_images.shape[0], network.old_classes, what="old-task ")
    network.old_head.requires_grad_(settings.mode != "finetune")
    network.to(device).train()
    optimizer = sgd(network, settings.lr, settings.momentum, settings.nesterov, settings.weight_decay, head=NEW_HEAD)
    new_stream = random_batches(new_images.shape[0], settings.batch_size, generator)
    old_stream = (
        random_batches(old_images.shape[0], settings.batch_size, generator) if settings.mode == "joint" else None
    )
    old_classes = network.old_classes
    watch = FiniteWatch("train_lwf", settings.steps, device)
    window = LossWindow(("loss", "loss_new", "loss_old"), settings.steps, report, report_every, progress, watch)
    for step in range(settings.steps):
        lr = learning_rate(settings.schedule, step, settings.steps, settings.lr, settings.warmup_steps)
        set_lr(optimizer, lr, backbone_scale(step, settings.freeze_backbone_steps, settings.backbone_lr_scale))
        idx = next(new_stream)
        inputs = [_augmented(new_images[idx], augment_fn, device)]
        if old_stream is not None:
            idx_old = next(old_stream)
            inputs.append(_augmented(old_images[idx_old], augment_fn, device))
        logits = network(torch.cat(inputs))
        new_part = logits[: len(idx)]
        y_new = new_targets[idx].to(device, non_blocking=True)
        if settings.mode == "lwf":
            loss, loss_new, loss_old = lwf_loss(
                new_part[:, old_classes:],
                y_new,
                new_part[:, :old_classes],
                recorded[idx].to(device, non_blocking=True),
                settings.lambda_old,
                settings.temperature,
            )
        else:
            loss_new = F.cross_entropy(new_part[:, old_classes:], y_new)
            loss_old = torch.zeros((), device=device)
            if old_stream is not None:
                loss_old = F.cross_entropy(
                    logits[len(idx) :, :old_classes], old_targets[idx_old].to(device, non_blocking=True)
                )
            loss = loss_new + loss_old
        watch.observe(loss, step + 1, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.add(step, torch.stack([loss, loss_new, loss_old]), lr)
    network.old_head.requires_grad_(True)
    return network.eval()
