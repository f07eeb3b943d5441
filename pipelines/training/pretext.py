"""Self-supervised pretraining: RotNet or SimCLR on unlabeled images, one explicit loop.

Each step draws B images (labels never read) and, by ``method``:

- "rotnet": the weak view of each, at 0/90/180/270 degrees (4B images), 4-way CE on the rotation;
- "simclr": two strong views of each (2B images) through encoder + projection head, NT-Xent at
  temperature tau over the 2B views.

The network keeps the registered model's layout (``pipelines.self_supervised``): its ``fc`` is the
rotation head or the projection head, which the later stages drop. SGD with momentum, cosine LR,
no decay on BN/bias (SimCLR's LARS matters at batch 4096, not at a few hundred images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines.models import to_float
from pipelines.schedules import learning_rate
from pipelines.self_supervised import nt_xent_loss, rotation_batch
from pipelines.training.common import (
    Augment,
    Progress,
    Report,
    check_images,
    minimize,
    sgd,
)

METHODS = ("rotnet", "simclr")


@dataclass(frozen=True)
class PretextSettings:
    """The pretext task and its optimisation (bounds checked on the `pretext` config section).

    The stage fills every field from that section (pipelines.stages.common.settings_from refuses one
    it cannot); the defaults, for code that builds these settings directly, are the section's own.
    """

    method: str
    steps: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    temperature: float = 0.5


def pretext_loss(
    network: nn.Module,
    images: Tensor,
    settings: PretextSettings,
    weak_fn: Augment,
    strong_fn: Augment,
    device: str | torch.device,
) -> Tensor:
    """The pretext loss of one batch of uint8 images (see the module docstring)."""
    if settings.method == "rotnet":
        rotated, rotations = rotation_batch(weak_fn(images))
        return F.cross_entropy(
            network(to_float(rotated.to(device, non_blocking=True))), rotations.to(device, non_blocking=True)
        )
    views = torch.cat([strong_fn(images), strong_fn(images)])
    z = network(to_float(views.to(device, non_blocking=True)))
    return nt_xent_loss(z[: len(images)], z[len(images) :], settings.temperature)


def train_pretext(
    network: nn.Module,
    images: Tensor,
    settings: PretextSettings,
    weak_fn: Augment,
    strong_fn: Augment,
    device: str | torch.device,
    generator: torch.Generator,
    report: Report | None = None,
    report_every: int = 50,
    progress: Progress | None = None,
) -> nn.Module:
    """Train ``network`` in place on the pretext task; return it in eval mode. ``report(step, {loss, lr})``."""
    if settings.method not in METHODS:
        raise ValueError(f"train_pretext: unknown method {settings.method!r}; valid: {', '.join(METHODS)}")
    check_images("train_pretext", images)
    batch = min(settings.batch_size, images.shape[0])
    if settings.method == "simclr" and batch < 2:
        raise ValueError(f"train_pretext: SimCLR needs at least 2 images a batch (negatives), got {batch}")
    network.to(device).train()
    minimize(
        lambda batch: pretext_loss(network, batch, settings, weak_fn, strong_fn, device),
        images,
        sgd(network, settings.lr, settings.momentum, False, settings.weight_decay),
        settings.steps,
        batch,
        lambda step: learning_rate("cosine", step, settings.steps, settings.lr),
        generator,
        f"train_pretext ({settings.method})",
        report,
        report_every,
        progress,
    )
    return network.eval()
