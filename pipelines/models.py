"""Model registry: a small CPU-friendly CNN, FixMatch's WRN-28-2, and torchvision ResNet-18/34.

Every model maps ``[B, in_channels, H, W]`` float images to ``[B, num_classes]`` logits for
16x16 and 32x32 inputs (the small CNN also for native 8x8 digits), ends in an ``nn.Linear`` named ``fc`` (the classifier Knowledge
Evolution slices) and applies ``dropout`` right before it (Noisy Student's final-layer noise).
The residual models also take ``stochastic_depth`` (Noisy Student's third noise, Huang et al.
2016): the drop probability p of the LAST residual block, block i of n dropping its residual
branch with probability p * (i + 1) / n (survival 1 - p at the last: the survival 0.8 of
docs/ALGORITHMS.md, Noisy Student is p = 0.2). Stochastic depth adds no parameters or buffers,
so state_dict keys are the same with and without it, and it is the identity in eval mode. No
model ever downloads weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipelines.model_names import RESIDUAL_MODELS, check_stochastic_depth

if TYPE_CHECKING:  # torchvision is imported where a ResNet or stochastic depth is built, not here
    from torchvision import models as tv_models


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1]: (x/255 - 0.5)/0.5, the normalisation every model sees.

    Here, not in ``pipelines.augment``: labeling needs it without augmentations, and importing
    torchvision (which augment and the ResNets need) cost a labeling actor 2 s of CPU at start-up.
    """
    return (images.to(torch.float32) / 255.0 - 0.5) / 0.5


class HalvingPool(nn.Module):
    """2x2 max pool that leaves a map alone once its smaller side is ``min_side`` or less.

    It lets one network fit its input: 16x16 and 32x32 images are pooled as before, while native
    8x8 digits keep a 4x4 map for the last conv instead of being squeezed to 2x2. No parameters.
    Its branch depends on the input's shape, so graph tracers must keep it a leaf (``LEAF_MODULES``).
    """

    def __init__(self, min_side: int = 4) -> None:
        super().__init__()
        self.min_side = min_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2], x.shape[-1]) <= self.min_side:
            return x
        return nn.functional.max_pool2d(x, 2)


class SmallCNN(nn.Module):
    """Three conv blocks (32-64-128, BN, ReLU, 2x2 max pool after the first two), global pool, linear.

    About 95k parameters: small enough to train thousands of steps on 16x16 digits on two CPU
    cores in minutes, big enough to reach high accuracy there. The pools stop at 4x4
    (``HalvingPool``): on native 8x8 digits only the first acts (conv32-pool-conv64-conv128-GAP-fc).
    """

    def __init__(self, num_classes: int, in_channels: int, dropout: float = 0.0, width: int = 32) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, widths[0]),
            HalvingPool(),
            _conv_bn_relu(widths[0], widths[1]),
            HalvingPool(),
            _conv_bn_relu(widths[1], widths[2]),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv (no bias: BN follows) + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


# ---------------------------------------------------------------------------------------------
# WRN-28-2 as in FixMatch (Sohn et al. 2020; the PyTorch ports of USB / kekmodel)
# ---------------------------------------------------------------------------------------------

BN_MOMENTUM = 0.001  # PyTorch momentum 0.001 == TF decay 0.999, FixMatch's setting
LEAKY_SLOPE = 0.1


class WarmStartBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose running statistics average the first batches equally, then move at ``momentum``.

    At FixMatch's momentum of 0.001, 67% of the running mean and variance are still the initial 0
    and 1 after 400 steps, and evaluation and pseudo-labeling use them: a WRN run of a few hundred
    steps (a Tune trial) was scored on statistics of no data. Training batch ``n`` (from 0) moves
    them by ``max(momentum, 1 / (n + 1))``, the way ``ModelEMA`` warms up the weights; after
    ``1 / momentum`` batches this is FixMatch's update. The count lives on the host (no step waits
    for the GPU) and is read back from ``num_batches_tracked`` when a state dict is loaded.
    """

    def __init__(self, num_features: int, momentum: float = BN_MOMENTUM) -> None:
        super().__init__(num_features, momentum=momentum)
        self.steady_momentum = momentum
        self.batches_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.momentum = max(self.steady_momentum, 1.0 / (self.batches_seen + 1))
            self.batches_seen += 1
        return super().forward(x)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.batches_seen = int(self.num_batches_tracked)


# Modules whose forward branches on the input's shape or on the module's state: torch.fx must not
# trace into them (FitNets' cut). Leaves run as whole nodes, as torch's own BatchNorm2d does.
LEAF_MODULES: tuple[type[nn.Module], ...] = (HalvingPool, WarmStartBatchNorm2d)


class WideBasicBlock(nn.Module):
    """Pre-activation wide residual block (BN-LeakyReLU-conv x2) with a 1x1 shortcut on shape change.

    ``activate_before_residual`` (first block of the first group) feeds the activated input to the
    shortcut too, as FixMatch's WRN does. ``drop_prob`` drops the residual branch per sample
    (stochastic depth, rescaled by 1 / (1 - drop_prob) in training, identity in eval).
    """

    def __init__(
        self, cin: int, cout: int, stride: int, activate_before_residual: bool = False, drop_prob: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = WarmStartBatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = WarmStartBatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=False)
        self.equal_in_out = cin == cout and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        self.activate_before_residual = activate_before_residual
        from torchvision.ops import StochasticDepth

        self.stochastic_depth = StochasticDepth(drop_prob, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        out = self.stochastic_depth(self.conv2(self.act(self.bn2(self.conv1(pre)))))
        if self.equal_in_out:
            return x + out
        residual_input = pre if self.activate_before_residual else x
        return self.shortcut(residual_input) + out


class WideResNet(nn.Module):
    """WRN-depth-k: 3 groups of (depth-4)/6 blocks, widths 16k, 32k, 64k, strides 1, 2, 2."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        depth: int = 28,
        widen: int = 2,
        dropout: float = 0.0,
        stochastic_depth: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth: expected 6n+4 (e.g. 28); got {depth}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        drops = block_drop_probs(stochastic_depth, 3 * blocks)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = _wide_group(widths[0], widths[1], drops[:blocks], stride=1, activate_before_residual=True)
        self.block2 = _wide_group(widths[1], widths[2], drops[blocks : 2 * blocks], stride=2)
        self.block3 = _wide_group(widths[2], widths[3], drops[2 * blocks :], stride=2)
        self.bn = WarmStartBatchNorm2d(widths[3])
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[3], num_classes)
        _init_wide_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.pool(self.act(self.bn(out))).flatten(1)
        return self.fc(self.dropout(out))


def _wide_group(
    cin: int, cout: int, drops: list[float], stride: int, activate_before_residual: bool = False
) -> nn.Sequential:
    """One WRN stage of len(drops) blocks: the first block changes width/stride, the rest keep them."""
    layers = [WideBasicBlock(cin, cout, stride, activate_before_residual, drop_prob=drops[0])]
    layers += [WideBasicBlock(cout, cout, 1, drop_prob=p) for p in drops[1:]]
    return nn.Sequential(*layers)


def block_drop_probs(stochastic_depth: float, blocks: int) -> list[float]:
    """Stochastic depth's linear decay rule: block i of n drops its residual branch with p * (i + 1) / n.

    p is the drop probability of the last block (survival 1 - p there, Huang et al. 2016).
    """
    return [stochastic_depth * (i + 1) / blocks for i in range(blocks)]


def _init_wide_resnet(model: nn.Module) -> None:
    """FixMatch's init: kaiming-normal convs (fan_out, leaky relu), BN 1/0, xavier classifier."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------
# torchvision ResNets
# ---------------------------------------------------------------------------------------------


class DropPathBasicBlock(nn.Module):
    """A torchvision ``BasicBlock`` with stochastic depth on its residual branch.

    It takes over the block's submodules under the same attribute names (conv1, bn1, relu, conv2,
    bn2, downsample), so the state_dict keys are those of the plain block and checkpoints load
    into a ResNet built with or without stochastic depth.
    """

    def __init__(self, block: tv_models.resnet.BasicBlock, drop_prob: float) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = block.conv1, block.bn1, block.relu
        self.conv2, self.bn2, self.downsample = block.conv2, block.bn2, block.downsample
        from torchvision.ops import StochasticDepth

        self.stochastic_depth = StochasticDepth(drop_prob, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.stochastic_depth(out) + identity)


def _add_stochastic_depth(model: tv_models.ResNet, stochastic_depth: float) -> tv_models.ResNet:
    """Wrap every residual block of layer1..layer4 in place (no-op for 0: the plain blocks stay)."""
    from torchvision import models as tv_models

    if stochastic_depth == 0.0:
        return model
    layers = (model.layer1, model.layer2, model.layer3, model.layer4)
    drops = iter(block_drop_probs(stochastic_depth, sum(len(layer) for layer in layers)))
    for layer in layers:
        for index, block in enumerate(layer):
            if not isinstance(block, tv_models.resnet.BasicBlock):
                raise ValueError(f"stochastic_depth: expected torchvision BasicBlocks; got {type(block).__name__}")
            layer[index] = DropPathBasicBlock(block, next(drops))
    return model


def _adapt_resnet(model: tv_models.ResNet, in_channels: int, dropout: float) -> tv_models.ResNet:
    """CIFAR-style stem and final-layer dropout on a torchvision ResNet.

    The ImageNet stem (7x7 stride 2 + max pool) shrinks a 16x16 image to 4x4 before the first
    block and a 32x32 one to 8x8, leaving layer4 with 1x1 maps; a 3x3 stride-1 conv without max
    pool keeps the resolution, as in every CIFAR ResNet. Dropout is appended to ``avgpool`` so
    that ``fc`` stays a plain ``nn.Linear`` with torchvision's parameter names.
    """
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    model.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout))
    return model


def resnet18(num_classes: int, in_channels: int, dropout: float = 0.0, stochastic_depth: float = 0.0) -> nn.Module:
    """torchvision ResNet-18, random init (weights=None), CIFAR stem."""
    from torchvision import models as tv_models

    model = _adapt_resnet(tv_models.resnet18(weights=None, num_classes=num_classes), in_channels, dropout)
    return _add_stochastic_depth(model, stochastic_depth)


def resnet34(num_classes: int, in_channels: int, dropout: float = 0.0, stochastic_depth: float = 0.0) -> nn.Module:
    """torchvision ResNet-34, random init (weights=None), CIFAR stem."""
    from torchvision import models as tv_models

    model = _adapt_resnet(tv_models.resnet34(weights=None, num_classes=num_classes), in_channels, dropout)
    return _add_stochastic_depth(model, stochastic_depth)


def small_cnn(num_classes: int, in_channels: int, dropout: float = 0.0) -> nn.Module:
    """The CPU model for digits/synthetic demos and tests (no residual blocks: no stochastic depth)."""
    return SmallCNN(num_classes, in_channels, dropout)


def wrn28_2(num_classes: int, in_channels: int, dropout: float = 0.0, stochastic_depth: float = 0.0) -> nn.Module:
    """WRN-28-2 (1.5M parameters), the FixMatch/CReST backbone for CIFAR."""
    return WideResNet(num_classes, in_channels, depth=28, widen=2, dropout=dropout, stochastic_depth=stochastic_depth)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": small_cnn,
    "wrn28_2": wrn28_2,
    "resnet18": resnet18,
    "resnet34": resnet34,
}


def create_model(
    name: str, num_classes: int, in_channels: int, dropout: float = 0.0, stochastic_depth: float = 0.0
) -> nn.Module:
    """Build a registered model; an unknown name lists the valid ones.

    ``stochastic_depth`` is the drop probability of the last residual block (see the module
    docstring); only RESIDUAL_MODELS accept a positive value.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a value in [0, 1); got {dropout}")
    check_stochastic_depth(name, stochastic_depth)
    if name not in RESIDUAL_MODELS:
        return MODELS[name](num_classes=num_classes, in_channels=in_channels, dropout=dropout)
    return MODELS[name](
        num_classes=num_classes, in_channels=in_channels, dropout=dropout, stochastic_depth=stochastic_depth
    )


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not); buffers such as BN running stats excluded."""
    return sum(p.numel() for p in model.parameters())
