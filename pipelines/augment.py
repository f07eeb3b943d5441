"""Weak and strong augmentation of uint8 image batches, Cutout and CutMix.

The ops follow docs/ALGORITHMS.md, FixMatch and RandAugment.

Every function takes a uint8 batch ``[B, C, H, W]`` (C = 1 or 3) and draws its randomness PER
SAMPLE: each image gets its own flip, crop, RandAugment ops, magnitudes and Cutout box. Applying
one op choice to a whole batch would make the "strong" view of a batch far less diverse than the
papers' per-image pipelines.

Randomness: these functions (and torchvision's RandAugment inside them) draw from torch's GLOBAL
RNG, because torchvision transforms take no generator. Callers make a stage reproducible by
seeding it once (``torch.manual_seed(seed)``) at the start of the stage. ``cutmix`` is the
exception: it is a pure function of its ``generator``.

Speed: flip, crop and Cutout are vectorized over the batch (one gather / one mask). RandAugment's
op choice is per image: the "torchvision" style groups the images that drew the same op and sign
and runs torchvision's kernel once per group; the "fixmatch" style (a random magnitude per image)
runs per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

STRONG_STYLES = ("torchvision", "fixmatch")
CUTOUT_FILL = 127
AFFINE_FILL = 128  # FixMatch fills exposed borders of rotate/shear/translate with grey (128, 128, 128)
NUM_MAGNITUDE_BINS = 11  # magnitude M on the paper's 0..10 scale
MAX_MAGNITUDE = NUM_MAGNITUDE_BINS - 1


# ---------------------------------------------------------------------------------------------
# Weak: flip + reflect-padded random crop, vectorized
# ---------------------------------------------------------------------------------------------


def weak_augment(images: torch.Tensor, flip: bool = True, pad_fraction: float = 0.125) -> torch.Tensor:
    """FixMatch's weak view: per-sample random horizontal flip and random crop with reflect padding.

    Padding is round(pad_fraction * H) pixels (4 px on 32x32, 2 px on 16x16). The crop of the
    padded image is computed as one gather with reflected indices, so no padded copy is built.
    """
    _check_images(images)
    batch, _, height, width = images.shape
    rows = _crop_indices(batch, height, round(pad_fraction * height), images.device)
    cols = _crop_indices(batch, width, round(pad_fraction * width), images.device)
    if flip:
        flipped = torch.rand(batch, device=images.device) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    gathered = images[batch_index, :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return gathered.permute(0, 3, 1, 2).contiguous()


def _crop_indices(batch: int, size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of every output row/column of a random crop of a reflect-padded axis."""
    if pad >= size:
        raise ValueError(f"pad_fraction: padding of {pad} px needs images larger than {pad}; got size {size}")
    offsets = torch.randint(0, 2 * pad + 1, (batch, 1), device=device) - pad
    index = torch.arange(size, device=device)[None, :] + offsets
    index = index.abs()  # reflect below 0 (the edge pixel is not repeated, as in 'reflect' padding)
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


# ---------------------------------------------------------------------------------------------
# Strong: weak + RandAugment (per sample) + Cutout
# ---------------------------------------------------------------------------------------------


def strong_augment(
    images: torch.Tensor,
    style: str = "torchvision",
    num_ops: int = 2,
    magnitude: int = 9,
    cutout: float = 0.5,
    flip: bool = True,
    pad_fraction: float = 0.125,
) -> torch.Tensor:
    """FixMatch's strong view: weak + RandAugment(N, M) per sample + Cutout.

    "torchvision": ``v2.RandAugment(num_ops=N, magnitude=M, num_magnitude_bins=11)``, every op
    applied at the fixed magnitude M (0..10 scale). "fixmatch": N ops from the 14-op pool, each
    applied with p=0.5 at a magnitude drawn uniformly from the integers 1..M (FixMatch's
    RandAugmentMC). Cutout: a grey (127) square of side cutout*H at a uniform random centre.
    """
    _check_strong_args(style, num_ops, magnitude, cutout)
    out = weak_augment(images, flip=flip, pad_fraction=pad_fraction)
    if num_ops > 0:
        out = _RANDAUGMENT_STYLES[style](out, num_ops, magnitude)
    if cutout > 0:
        out = apply_cutout(out, cutout)
    return out


def _check_strong_args(style: str, num_ops: int, magnitude: int, cutout: float) -> None:
    """Reject knobs that would silently do nothing or crash deep inside torchvision."""
    problems = []
    if style not in STRONG_STYLES:
        problems.append(f"style: expected one of {', '.join(STRONG_STYLES)}; got {style!r}")
    if num_ops < 0:
        problems.append(f"num_ops: expected >= 0; got {num_ops}")
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        problems.append(f"magnitude: expected an integer in 0..{MAX_MAGNITUDE} (RandAugment's M); got {magnitude}")
    if not 0.0 <= cutout <= 1.0:
        problems.append(f"cutout: expected a fraction of the image side in [0, 1]; got {cutout}")
    if problems:
        raise ValueError("strong_augment: " + "; ".join(problems))


def _randaugment_torchvision(images: torch.Tensor, num_ops: int, magnitude: int) -> torch.Tensor:
    """torchvision's RandAugment on the paper's 0..10 scale, with every image drawing its own ops.

    Same distribution as calling ``v2.RandAugment(num_ops=N, magnitude=M, num_magnitude_bins=11)``
    on each image alone (a batched call would draw one op for the whole batch): per image and op
    slot, one of the 14 ops uniformly and, for signed ops, a sign with probability 1/2, applied at
    the fixed magnitude M with torchvision's value table (``TORCHVISION_OPS``) and fill 0. The
    images that drew the same (op, sign) in a slot go through the op's kernel together, so a batch
    costs a few dozen kernel calls instead of N per image (about 3x faster on 16x16 digits).
    """
    batch, _, height, width = images.shape
    out = images.clone()
    for _ in range(num_ops):
        ops = torch.randint(len(TORCHVISION_OPS), (batch,))
        negative = torch.rand(batch) <= 0.5
        for index, (_name, value_at, signed, apply) in enumerate(TORCHVISION_OPS):
            chosen = ops == index
            if not bool(chosen.any()):
                continue
            value = value_at(magnitude, height, width)
            for sign in (1.0, -1.0) if signed else (1.0,):
                rows = torch.nonzero(chosen & (negative == (sign < 0)) if signed else chosen).flatten()
                if rows.numel():
                    out[rows] = apply(out[rows], sign * value)
    return out


def _randaugment_fixmatch(images: torch.Tensor, num_ops: int, magnitude: int) -> torch.Tensor:
    """FixMatch's RandAugmentMC: per image, N ops with replacement, each with p=0.5, level in 1..M.

    All random numbers are drawn as batch tensors up front (one RNG call each), then applied
    image by image.
    """
    batch = images.shape[0]
    ops = torch.randint(len(FIXMATCH_OPS), (batch, num_ops)).tolist()
    applied = (torch.rand(batch, num_ops) < 0.5).tolist()
    levels = torch.randint(min(1, magnitude), magnitude + 1, (batch, num_ops)).tolist()
    signs = (torch.randint(0, 2, (batch, num_ops)) * 2 - 1).tolist()
    out = []
    for i, image in enumerate(images):
        for op, use, level, sign in zip(ops[i], applied[i], levels[i], signs[i]):
            if use:
                image = FIXMATCH_OPS[op][1](image, level / MAX_MAGNITUDE, sign)
        out.append(image)
    return torch.stack(out)


def apply_cutout(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) per sample: a grey square of side round(fraction*H), clipped at borders."""
    batch, _, height, width = images.shape
    side = round(fraction * height)
    if side == 0:
        return images
    top = torch.randint(0, height, (batch, 1), device=images.device) - side // 2
    left = torch.randint(0, width, (batch, 1), device=images.device) - side // 2
    rows = torch.arange(height, device=images.device)[None, :]
    cols = torch.arange(width, device=images.device)[None, :]
    in_rows = (rows >= top) & (rows < top + side)
    in_cols = (cols >= left) & (cols < left + side)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    return torch.where(mask, torch.full_like(images, CUTOUT_FILL), images)


# ---------------------------------------------------------------------------------------------
# The 14-op pool. Each op takes (uint8 image [C, H, W], strength s in [0, 1], sign +-1); value
# ranges follow torchvision's RandAugment table at s = M/10 so both styles mean the same per M.
# ---------------------------------------------------------------------------------------------


def _affine(image: torch.Tensor, **kwargs) -> torch.Tensor:
    return F.affine(image, interpolation=InterpolationMode.NEAREST, fill=AFFINE_FILL, **kwargs)


def _shear(image: torch.Tensor, s: float, sign: int, axis: int) -> torch.Tensor:
    degrees = math.degrees(math.atan(sign * 0.3 * s))
    shear = [degrees, 0.0] if axis == 0 else [0.0, degrees]
    return _affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, center=[0, 0])


def _translate(image: torch.Tensor, s: float, sign: int, axis: int) -> torch.Tensor:
    pixels = int(sign * 150.0 / 331.0 * image.shape[-1 - axis] * s)
    translate = [pixels, 0] if axis == 0 else [0, pixels]
    return _affine(image, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0])


def _enhance(
    adjust: Callable[[torch.Tensor, float], torch.Tensor],
) -> Callable[[torch.Tensor, float, int], torch.Tensor]:
    """PIL.ImageEnhance-style ops: factor 1 +- 0.9*s (1 = unchanged)."""
    return lambda image, s, sign: adjust(image, 1.0 + sign * 0.9 * s)


FIXMATCH_OPS: tuple[tuple[str, Callable[[torch.Tensor, float, int], torch.Tensor]], ...] = (
    ("Identity", lambda image, s, sign: image),
    ("AutoContrast", lambda image, s, sign: F.autocontrast(image)),
    ("Equalize", lambda image, s, sign: F.equalize(image)),
    (
        "Rotate",
        lambda image, s, sign: _affine(image, angle=sign * 30.0 * s, translate=[0, 0], scale=1.0, shear=[0.0, 0.0]),
    ),
    ("Solarize", lambda image, s, sign: F.solarize(image, threshold=255.0 * (1.0 - s))),
    ("Color", _enhance(F.adjust_saturation)),
    ("Posterize", lambda image, s, sign: F.posterize(image, bits=8 - round(4 * s))),
    ("Contrast", _enhance(F.adjust_contrast)),
    ("Brightness", _enhance(F.adjust_brightness)),
    ("Sharpness", _enhance(F.adjust_sharpness)),
    ("ShearX", lambda image, s, sign: _shear(image, s, sign, axis=0)),
    ("ShearY", lambda image, s, sign: _shear(image, s, sign, axis=1)),
    ("TranslateX", lambda image, s, sign: _translate(image, s, sign, axis=0)),
    ("TranslateY", lambda image, s, sign: _translate(image, s, sign, axis=1)),
)


def _tv_affine(images: torch.Tensor, **kwargs) -> torch.Tensor:
    return F.affine(images, interpolation=InterpolationMode.NEAREST, fill=0, **kwargs)


def _tv_linear(top: float) -> Callable[[int, int, int], float]:
    """linspace(0, top, 11)[M]: torchvision's value of a signed op at magnitude M (0..10)."""
    return lambda m, height, width: top * m / MAX_MAGNITUDE


def _tv_shear(axis: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def shear(images: torch.Tensor, value: float) -> torch.Tensor:
        degrees = math.degrees(math.atan(value))
        angles = [degrees, 0.0] if axis == 0 else [0.0, degrees]
        return _tv_affine(images, angle=0.0, translate=[0, 0], scale=1.0, shear=angles, center=[0, 0])

    return shear


def _tv_translate(axis: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def translate(images: torch.Tensor, value: float) -> torch.Tensor:
        shift = [int(value), 0] if axis == 0 else [0, int(value)]
        return _tv_affine(images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0])

    return translate


# torchvision.transforms.v2.RandAugment's 14 ops (its _AUGMENTATION_SPACE and kernels, fill 0, nearest), in its
# order: (name, value at magnitude M for an H x W image, signed, kernel(batch, value)). A test compares every op
# with torchvision's own at several magnitudes and sizes.
TORCHVISION_OPS: tuple[
    tuple[str, Callable[[int, int, int], float], bool, Callable[[torch.Tensor, float], torch.Tensor]], ...
] = (
    ("Identity", lambda m, h, w: 0.0, False, lambda x, v: x),
    ("ShearX", _tv_linear(0.3), True, _tv_shear(0)),
    ("ShearY", _tv_linear(0.3), True, _tv_shear(1)),
    ("TranslateX", lambda m, h, w: 150.0 / 331.0 * w * m / MAX_MAGNITUDE, True, _tv_translate(0)),
    ("TranslateY", lambda m, h, w: 150.0 / 331.0 * h * m / MAX_MAGNITUDE, True, _tv_translate(1)),
    (
        "Rotate",
        _tv_linear(30.0),
        True,
        lambda x, v: F.rotate(x, angle=v, interpolation=InterpolationMode.NEAREST, fill=0),
    ),
    ("Brightness", _tv_linear(0.9), True, lambda x, v: F.adjust_brightness(x, brightness_factor=1.0 + v)),
    ("Color", _tv_linear(0.9), True, lambda x, v: F.adjust_saturation(x, saturation_factor=1.0 + v)),
    ("Contrast", _tv_linear(0.9), True, lambda x, v: F.adjust_contrast(x, contrast_factor=1.0 + v)),
    ("Sharpness", _tv_linear(0.9), True, lambda x, v: F.adjust_sharpness(x, sharpness_factor=1.0 + v)),
    (
        "Posterize",
        lambda m, h, w: float(round(8 - m / (MAX_MAGNITUDE / 4))),
        False,
        lambda x, v: F.posterize(x, bits=int(v)),
    ),
    ("Solarize", lambda m, h, w: 1.0 - m / MAX_MAGNITUDE, False, lambda x, v: F.solarize(x, threshold=255.0 * v)),
    ("AutoContrast", lambda m, h, w: 0.0, False, lambda x, v: F.autocontrast(x)),
    ("Equalize", lambda m, h, w: 0.0, False, lambda x, v: F.equalize(x)),
)


_RANDAUGMENT_STYLES: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "torchvision": _randaugment_torchvision,
    "fixmatch": _randaugment_fixmatch,
}


# ---------------------------------------------------------------------------------------------
# CutMix
# ---------------------------------------------------------------------------------------------


def cutmix(
    images: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019): paste a box from a permuted partner, mix targets by area.

    lambda ~ Beta(alpha, alpha); box side sqrt(1 - lambda) of H and W at a uniform centre, clipped;
    targets = lam_adj * y + (1 - lam_adj) * y[perm] with lam_adj = 1 - box_area / (H*W), the area
    actually kept after clipping. Inputs are not modified. The Beta draw uses a numpy generator
    seeded from ``generator`` because torch's Beta sampler takes no generator.
    """
    if alpha <= 0:
        raise ValueError(f"cutmix alpha: expected > 0; got {alpha} (leave CutMix out instead of alpha=0)")
    batch, _, height, width = images.shape
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(batch, generator=generator).to(images.device)
    top, bottom = _box_span(height, math.sqrt(1.0 - lam), generator)
    left, right = _box_span(width, math.sqrt(1.0 - lam), generator)
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[perm, :, top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, kept * targets + (1.0 - kept) * targets[perm]


def _box_span(size: int, ratio: float, generator: torch.Generator) -> tuple[int, int]:
    """[start, end) of a box of length int(size*ratio) centred uniformly, clipped to the axis."""
    length = int(size * ratio)
    centre = int(torch.randint(0, size, (1,), generator=generator).item())
    return max(centre - length // 2, 0), min(centre + length // 2, size)


def _check_images(images: torch.Tensor) -> None:
    """Augmentations are defined on uint8 [B, C, H, W] with C in {1, 3}."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images [B, C, H, W] with C in (1, 3); got {images.dtype} {tuple(images.shape)}"
        )
