"""FitNets' first stage: train the student up to its guided layer to predict the teacher's hint, through a regressor.

One explicit loop (``pipelines.fitnets`` holds the loss, the regressor and the layer cut-outs): the
student's sub-network up to the guided layer and the regressor train on
``L_hint = 1/2 ||h_teacher(x) - r(g_student(x))||^2``; the teacher (eval mode, no gradient) sees
the same augmented batch. The trained layers are copied back into the student, whose later layers
keep their initialisation: the second stage (KD) trains the whole student from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipelines.fitnets import HintRegressor, copy_back, hint_loss, layer_extractor, layer_output, output_shape
from pipelines.models import to_float
from pipelines.schedules import learning_rate
from pipelines.training.common import (
    Augment,
    Progress,
    Report,
    check_images,
    minimize,
    sgd,
)


@dataclass(frozen=True)
class HintSettings:
    """Optimisation of the hint stage: the student's `train` section with the hint stage's length (checked there).

    The stage fills every field from the config (pipelines.stages.common.settings_from refuses one
    it cannot); the defaults, for code that builds these settings directly, are the `train` section's.
    """

    steps: int
    batch_size: int = 32
    lr: float = 0.256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0


def train_hint(
    student: nn.Module,
    teacher: nn.Module,
    guided_layer: str,
    hint_layer: str,
    images: Tensor,
    settings: HintSettings,
    augment_fn: Augment | None,
    device: str | torch.device,
    generator: torch.Generator,
    report: Report | None = None,
    report_every: int = 50,
    progress: Progress | None = None,
) -> nn.Module:
    """Train ``student``'s layers up to ``guided_layer`` on the hint loss; return the whole student in eval mode.

    ``report(step, {loss, lr})`` every ``report_every`` steps and at the last.
    """
    check_images("train_hint", images)
    guided = layer_extractor(student, guided_layer).to(device).train()
    hint = layer_extractor(teacher, hint_layer).to(device).eval()
    shape = tuple(images.shape[1:])
    regressor = HintRegressor(output_shape(guided, shape), output_shape(hint, shape)).to(device)
    trained = nn.ModuleDict({"guided": guided, "regressor": regressor})

    def loss_of(batch: Tensor) -> Tensor:
        x = to_float((batch if augment_fn is None else augment_fn(batch)).to(device, non_blocking=True))
        with torch.no_grad():
            target = layer_output(hint, x)
        return hint_loss(target, regressor(layer_output(guided, x)))

    minimize(
        loss_of,
        images,
        sgd(trained, settings.lr, settings.momentum, settings.nesterov, settings.weight_decay),
        settings.steps,
        settings.batch_size,
        lambda step: learning_rate(settings.schedule, step, settings.steps, settings.lr, settings.warmup_steps),
        generator,
        "train_hint",
        report,
        report_every,
        progress,
    )
    copy_back(guided.cpu(), student)
    return student.eval()
