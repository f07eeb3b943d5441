"""Knowledge Evolution (Taha et al., CVPR 2021): split masks, re-init, slim extraction.

KE splits every layer into a fit hypothesis H (mask = 1) and a reset
hypothesis (mask = 0) once, in generation 0, and keeps that split for all
generations. Each later generation starts from the previous generation's last
checkpoint, re-initialises the reset hypothesis with PyTorch's default init,
keeps H, and trains the whole dense network (the mask never gates the
forward pass). With KELS the fit hypothesis is a channel prefix of every
layer, so it can be cut out as a slim dense network.

Masked parameters (docs/ALGORITHMS.md, Knowledge Evolution, following ahmdtaha/knowledge_evolution):
the weight of every ``nn.Conv2d`` (1x1 downsample convs included) and
``nn.Linear``, the bias of convs and of intermediate linears. BatchNorm
parameters and running statistics and the classifier bias are never masked,
so they are never reset.

Layer roles come from registration order (``model.named_modules()``): the
first ``nn.Conv2d`` is the stem (it keeps all input channels, the image), the
last ``nn.Linear`` is the classifier (it keeps all output rows, the classes).
The official code spots the stem by ``in_channels == 3``; registration order
also covers grey-scale inputs.

Masks are CPU bool tensors keyed by parameter name; persist them with
:func:`masks_to_state` in generation 0 and load them with
:func:`masks_from_state` later, never redraw them.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pipelines.model_names import SPLIT_MODES

logger = logging.getLogger(__name__)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class _Slot:
    """One maskable parameter: where it lives and what role its layer plays."""

    name: str
    module: nn.Module
    attr: str  # "weight" or "bias"
    role: str  # "stem", "conv", "linear" or "classifier"


def _slots(model: nn.Module) -> list[_Slot]:
    """List the maskable parameters in registration order.

    KE splits convs and fully connected layers only (docs/ALGORITHMS.md, Knowledge Evolution); the
    classifier bias stays whole because every class keeps its output row.
    """
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    first_conv = next((n for n, m in layers if isinstance(m, nn.Conv2d)), None)
    last_linear = next((n for n, m in reversed(layers) if isinstance(m, nn.Linear)), None)
    slots: list[_Slot] = []
    for name, module in layers:
        if name == first_conv:
            role = "stem"
        elif name == last_linear:
            role = "classifier"
        else:
            role = "conv" if isinstance(module, nn.Conv2d) else "linear"
        prefix = f"{name}." if name else ""
        slots.append(_Slot(prefix + "weight", module, "weight", role))
        if module.bias is not None and role != "classifier":
            slots.append(_Slot(prefix + "bias", module, "bias", role))
    return slots


def _check_split_args(split_rate: float, mode: str) -> None:
    """Collect every problem with the split arguments and raise once."""
    problems = []
    rate_ok = isinstance(split_rate, (int, float)) and 0.0 < float(split_rate) < 1.0
    if not rate_ok:
        problems.append(
            f"split_rate: expected a number strictly between 0 and 1, got {split_rate!r}; "
            "fix: pass the fraction of each layer kept in the fit hypothesis, "
            "e.g. 0.5 (paper default), 0.8 (KELS tables) or 0.7 (WELS tables)"
        )
    if mode not in SPLIT_MODES:
        problems.append(
            f"mode: expected one of {list(SPLIT_MODES)}, got {mode!r}; "
            "fix: use 'kels' (channel split, slim network extractable) or "
            "'wels' (random weight split)"
        )
    if problems:
        raise ValueError("invalid Knowledge Evolution split:\n  - " + "\n  - ".join(problems))


def _kels_mask(slot: _Slot, shape: torch.Size, split_rate: float) -> torch.Tensor:
    """KELS: first ceil(sr*C_out) filters x first ceil(sr*C_in) input channels.

    The stem keeps all its input channels (the image) and the classifier all
    its output rows (the classes), as in the paper and the official code.
    """
    mask = torch.zeros(shape, dtype=torch.bool)
    keep_out = shape[0] if slot.role == "classifier" else math.ceil(split_rate * shape[0])
    if slot.attr == "bias":
        mask[:keep_out] = True
        return mask
    keep_in = shape[1] if slot.role == "stem" else math.ceil(split_rate * shape[1])
    mask[:keep_out, :keep_in] = True
    return mask


def _wels_mask(shape: torch.Size, split_rate: float, generator: torch.Generator) -> torch.Tensor:
    """WELS: each weight joins the fit hypothesis independently with probability sr."""
    draws = torch.rand(shape, generator=generator, device=generator.device)
    return (draws < split_rate).cpu()


def make_split_masks(
    model: nn.Module, split_rate: float, mode: str, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Draw the fit/reset split of every conv and linear layer (1 = fit, 0 = reset).

    Made once in generation 0 and reused for every later generation
    (docs/ALGORITHMS.md, Knowledge Evolution); ``generator`` drives the WELS draws (KELS is
    deterministic). Raises ValueError for a rate outside (0, 1), an unknown
    mode, or a model with no conv or linear layer.
    """
    _check_split_args(split_rate, mode)
    slots = _slots(model)
    if not slots:
        raise ValueError(
            f"make_split_masks: expected a model with nn.Conv2d or nn.Linear layers, "
            f"got {type(model).__name__} with none; fix: pass the network to be evolved"
        )
    masks = {}
    for slot in slots:
        shape = getattr(slot.module, slot.attr).shape
        if mode == "kels":
            masks[slot.name] = _kels_mask(slot, shape, float(split_rate))
        else:
            masks[slot.name] = _wels_mask(shape, float(split_rate), generator)
    return masks


def masks_to_state(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks as a dict of contiguous CPU uint8 tensors, safe for torch.load(weights_only=True).

    uint8 rather than bool so any reader (NumPy, safetensors) takes them as-is.
    """
    return {name: mask.detach().to("cpu", torch.uint8).contiguous() for name, mask in masks.items()}


def masks_from_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read masks saved by :func:`masks_to_state` back as CPU bool tensors.

    Checks every entry and raises once: later generations must reuse the
    generation-0 split exactly, so a corrupt artifact has to fail loudly.
    """
    problems = []
    masks = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or value.dtype not in (torch.uint8, torch.bool):
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            problems.append(f"{name}: expected a uint8 or bool tensor, got {kind}")
        elif bool(((value != 0) & (value != 1)).any()):
            problems.append(f"{name}: expected only 0 and 1, got values {value.unique().tolist()}")
        else:
            masks[name] = value.to("cpu", torch.bool)
    if problems:
        raise ValueError(
            "invalid split-mask state:\n  - "
            + "\n  - ".join(problems)
            + "\nfix: load the masks artifact written by masks_to_state in generation 0"
        )
    return masks


def fit_fraction(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of each masked parameter in the fit hypothesis, for logging."""
    return {name: int(mask.sum()) / max(mask.numel(), 1) for name, mask in masks.items()}


def _check_masks_match(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, _Slot]:
    """Map mask names to slots, raising once for unknown names or wrong shapes."""
    slots = {slot.name: slot for slot in _slots(model)}
    problems = []
    for name, mask in masks.items():
        if name not in slots:
            problems.append(f"{name}: not a maskable parameter of {type(model).__name__}")
            continue
        shape = getattr(slots[name].module, slots[name].attr).shape
        if mask.shape != shape:
            problems.append(f"{name}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    if problems:
        raise ValueError(
            "split masks do not match the model:\n  - "
            + "\n  - ".join(problems)
            + "\nfix: use the masks made for this architecture in generation 0"
        )
    return slots


def _default_init(slot: _Slot, generator: torch.Generator) -> torch.Tensor:
    """A fresh draw from nn.Conv2d / nn.Linear ``reset_parameters``, on the generator's device.

    Weights: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in of the layer's weight.
    Drawing in float32 on the generator's device keeps the draw identical on CPU and GPU.
    """
    weight = slot.module.weight
    target = getattr(slot.module, slot.attr)
    fresh = torch.empty(target.shape, dtype=torch.float32, device=generator.device)
    if slot.attr == "weight":
        return nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
    fan_in = weight[0].numel()  # in_channels/groups * kernel area, as torch computes it
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return nn.init.uniform_(fresh, -bound, bound, generator=generator)


def reinitialize_reset_hypothesis(
    model: nn.Module, masks: Mapping[str, torch.Tensor], generator: torch.Generator
) -> None:
    """Re-initialise the reset hypothesis (mask == 0) in place; keep the fit hypothesis.

    KE's step for every generation > 0 (docs/ALGORITHMS.md, Knowledge Evolution): load the previous
    generation's last checkpoint, draw the reset weights afresh with PyTorch's
    default init, leave the fit weights, BatchNorm parameters and running
    statistics and the classifier bias untouched. Parameters are updated in
    place, so existing references to them stay valid. Draws follow the
    model's parameter order, so one generator seed gives one result.
    """
    slots = _check_masks_match(model, masks)
    reset = 0
    with torch.no_grad():
        for name in (slot.name for slot in _slots(model)):
            if name not in masks:
                continue
            param = getattr(slots[name].module, slots[name].attr)
            fresh = _default_init(slots[name], generator).to(param.device, param.dtype)
            keep = masks[name].to(param.device, torch.bool)
            param.copy_(torch.where(keep, param, fresh))
            reset += int((~keep).sum())
    logger.debug("re-initialised %d reset-hypothesis values in %d tensors", reset, len(masks))


def zero_reset_hypothesis(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the reset hypothesis in place (``ke.reinit=zero``): a re-dense start akin to DSD's.

    With two generations this is a dense-reset-dense variant of Dense-Sparse-Dense
    (docs/ALGORITHMS.md, Knowledge Evolution): training resumes, dense, from the fit hypothesis
    alone, the reset weights starting at zero. Unlike DSD the zeroed weights are the reset
    hypothesis, not the smallest-magnitude ones, and there is no sparse training phase.
    """
    with torch.no_grad():
        for name, mask in masks.items():
            param = model.get_parameter(name)
            param.mul_(mask.to(param.device, param.dtype))


def _prefix_counts(name: str, mask: torch.Tensor) -> tuple[int, int]:
    """Kept (out, in) counts of a KELS mask; ValueError when the mask is not a prefix block."""
    keep_out = int(mask.reshape(mask.shape[0], -1).any(dim=1).sum())
    keep_in = int(mask[0].reshape(mask.shape[1], -1).any(dim=1).sum()) if mask.dim() > 1 else 0
    block = torch.zeros_like(mask)
    if mask.dim() > 1:
        block[:keep_out, :keep_in] = True
    else:
        block[:keep_out] = True
    if not torch.equal(block, mask) or keep_out == 0:
        raise ValueError(
            f"extract_slim_network: expected KELS masks (a block of leading channels), "
            f"got a scattered mask for {name}; fix: slim extraction needs mode='kels', "
            "WELS fit hypotheses are not channel-aligned"
        )
    return keep_out, keep_in


def _kept_by_width(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[int, int]:
    """Channels kept for a feature width C: ceil(sr*C), read off the masks.

    KELS keeps ceil(sr*C) channels of every tensor of width C, so a
    BatchNorm over C channels keeps the same leading channels as the conv
    that feeds it. Conflicting counts mean the masks were not one KELS split.
    """
    kept: dict[int, int] = {}
    for slot in _slots(model):
        if slot.attr != "weight" or slot.name not in masks:
            continue
        keep_out, keep_in = _prefix_counts(slot.name, masks[slot.name])
        shape = slot.module.weight.shape
        pairs = [] if slot.role == "classifier" else [(shape[0], keep_out)]
        pairs += [] if slot.role == "stem" else [(shape[1], keep_in)]
        for width, count in pairs:
            if kept.setdefault(width, count) != count:
                raise ValueError(
                    f"extract_slim_network: expected one split rate for every layer, "
                    f"got {kept[width]} and {count} kept of {width} channels ({slot.name}); "
                    "fix: pass the masks from one make_split_masks call"
                )
    return kept


def _slice_(module: nn.Module, attr: str, index: tuple[slice, ...]) -> None:
    """Replace a parameter or buffer by a detached copy of its slice."""
    value = getattr(module, attr)
    if value is None:
        return
    sliced = value.detach()[index].clone()
    if isinstance(value, nn.Parameter):
        setattr(module, attr, nn.Parameter(sliced, requires_grad=value.requires_grad))
    else:
        setattr(module, attr, sliced)


def _slim_layer(name: str, module: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Cut one conv or linear layer down to its fit hypothesis."""
    prefix = f"{name}." if name else ""
    weight_name = prefix + "weight"
    if weight_name not in masks:
        raise ValueError(
            f"extract_slim_network: expected a mask for {weight_name}, got none; "
            "fix: pass the masks made by make_split_masks for this model"
        )
    keep_out, keep_in = _prefix_counts(weight_name, masks[weight_name])
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        raise ValueError(
            f"extract_slim_network: expected ungrouped convs, got groups={module.groups} "
            f"at {name}; fix: evaluate the dense network instead"
        )
    _slice_(module, "weight", (slice(0, keep_out), slice(0, keep_in)))
    _slice_(module, "bias", (slice(0, keep_out),))
    if isinstance(module, nn.Conv2d):
        module.out_channels, module.in_channels = keep_out, keep_in
    else:
        module.out_features, module.in_features = keep_out, keep_in


def _slim_norm(name: str, module: nn.Module, kept: Mapping[int, int]) -> None:
    """Keep the leading channels of a BatchNorm, as its producing conv does."""
    if module.num_features not in kept:
        raise ValueError(
            f"extract_slim_network: expected BatchNorm {name} to follow a masked layer, "
            f"got a width {module.num_features} no masked layer has; "
            "fix: slim extraction supports Conv2d/BatchNorm/Linear networks"
        )
    keep = kept[module.num_features]
    for attr in ("weight", "bias", "running_mean", "running_var"):
        _slice_(module, attr, (slice(0, keep),))
    module.num_features = keep


def extract_slim_network(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Return a new, smaller dense network made of the KELS fit hypothesis.

    KELS makes the fit hypothesis a block of leading channels in every layer,
    so slicing convs, BatchNorms and the classifier gives a network that
    computes exactly what the dense one computes with its reset hypothesis
    zeroed (eval mode). The paper evaluates it after every generation.
    The classifier must read pooled channels (as ResNets do). The input model
    is left unchanged. ValueError for WELS masks or unsupported layers.
    """
    _check_masks_match(model, masks)
    kept = _kept_by_width(model, masks)
    slim = copy.deepcopy(model)
    for name, module in slim.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _slim_layer(name, module, masks)
        elif isinstance(module, _BATCH_NORMS):
            _slim_norm(name, module, kept)
        elif any(True for _ in module.parameters(recurse=False)):
            raise ValueError(
                f"extract_slim_network: expected only Conv2d, BatchNorm and Linear layers "
                f"with parameters, got {type(module).__name__} at {name}; "
                "fix: evaluate the dense network instead"
            )
    return slim
