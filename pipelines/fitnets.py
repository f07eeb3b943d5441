"""FitNets (Romero et al., ICLR 2015): hint-based training of a student, then Hinton distillation.

Stage 1 trains the student's layers up to a guided layer ``g`` together with a regressor ``r`` so
that ``r(g_student(x))`` matches the teacher's hint layer ``h_teacher(x)``:

    L_hint = 1/2 * || h_teacher(x) - r(g_student(x)) ||^2     (per image, averaged over the batch)

Stage 2 trains the whole student with Hinton's KD from those weights (pipelines.losses). Layers are
chosen by module name (pipelines.model_names.HINT_LAYERS lists the valid ones per model, without
torch) and cut out with torchvision's ``create_feature_extractor``, whose graph holds exactly the
layers that compute the chosen output: its parameters are the ones stage 1 trains.

The regressor follows the paper: a convolution whose kernel ``k = H_g - H_h + 1`` (no padding)
maps the guided map's spatial size onto the hint's, with as many output channels as the hint has.
When the guided map is smaller than the hint (the paper never needs this), a 1x1 convolution and a
bilinear resize take its place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor

from pipelines.models import LEAF_MODULES

OUTPUT = "out"


def hint_loss(hint: Tensor, regressed: Tensor) -> Tensor:
    """``1/2 ||h - r(g)||^2`` per image, divided by the hint's size (C x H x W), averaged over the batch.

    Why the division: the paper's sum grows with the hint map, and so does its gradient; on a
    128 x 8 x 8 hint it is 8192 times the per-element loss, and SGD at the student's learning rate
    diverged within a few steps. The mean keeps one learning rate right for any pair of layers
    (it is the MSE that common FitNets implementations use).
    """
    if hint.shape != regressed.shape:
        raise ValueError(
            f"hint_loss: expected the regressed guided layer to match the hint, got {tuple(regressed.shape)} "
            f"for a hint of {tuple(hint.shape)}"
        )
    return 0.5 * (hint.detach().float() - regressed.float()).pow(2).mean()


class HintRegressor(nn.Module):
    """``r``: the guided layer's map ``[B, C_g, H_g, W_g]`` -> the hint's shape ``[B, C_h, H_h, W_h]``."""

    def __init__(self, guided_shape: Sequence[int], hint_shape: Sequence[int]) -> None:
        super().__init__()
        (c_g, h_g, w_g), (c_h, h_h, w_h) = tuple(guided_shape[-3:]), tuple(hint_shape[-3:])
        self.size = (h_h, w_h)
        if h_g >= h_h and w_g >= w_h:
            self.conv = nn.Conv2d(c_g, c_h, kernel_size=(h_g - h_h + 1, w_g - w_h + 1))
            self.resize = False
        else:
            self.conv = nn.Conv2d(c_g, c_h, kernel_size=1)
            self.resize = True

    def forward(self, guided: Tensor) -> Tensor:
        out = self.conv(guided)
        return F.interpolate(out, size=self.size, mode="bilinear", align_corners=False) if self.resize else out


def layer_extractor(model: nn.Module, layer: str) -> nn.Module:
    """The sub-network of ``model`` that computes ``layer``'s output (a copy: train it, then ``copy_back``)."""
    names = {name for name, _ in model.named_modules() if name}
    if layer not in names:
        raise ValueError(f"layer_extractor: {type(model).__name__} has no layer {layer!r}")
    leaves = {"leaf_modules": list(LEAF_MODULES)}  # shape-dependent forwards stay whole nodes
    return create_feature_extractor(model, return_nodes={layer: OUTPUT}, tracer_kwargs=leaves)


def layer_output(extractor: nn.Module, images: Tensor) -> Tensor:
    """The chosen layer's output for float images."""
    return extractor(images)[OUTPUT]


def copy_back(extractor: nn.Module, model: nn.Module) -> list[str]:
    """Load the trained extractor's weights and BN statistics into ``model`` (same key names); returns the keys."""
    state = extractor.state_dict()
    unknown = sorted(set(state) - set(model.state_dict()))
    if unknown:
        raise ValueError(f"copy_back: the extractor has keys the model lacks: {unknown[:5]}")
    model.load_state_dict(state, strict=False)
    return sorted(state)


@torch.no_grad()
def output_shape(extractor: nn.Module, image_shape: Sequence[int]) -> tuple[int, ...]:
    """The chosen layer's output shape ``(C, H, W)`` for one image of ``image_shape`` (a dry run in eval mode)."""
    was_training = extractor.training
    extractor.eval()
    shape = tuple(layer_output(extractor, torch.zeros(1, *image_shape)).shape[1:])
    extractor.train(was_training)
    return shape
