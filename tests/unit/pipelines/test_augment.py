"""Tests for pipelines.augment: per-sample randomness, knobs that act, Cutout, CutMix."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from pipelines import augment
from pipelines.augment import STRONG_STYLES, cutmix, strong_augment, weak_augment
from pipelines.models import to_float


def _images(batch: int = 16, channels: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, size, size), generator=gen, dtype=torch.uint8)


def test_to_float_range() -> None:
    out = to_float(torch.tensor([0, 255, 51], dtype=torch.uint8))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([-1.0, 1.0, -0.6]), atol=1e-6, rtol=0)


def test_weak_without_padding_or_flip_is_identity() -> None:
    x = _images()
    assert torch.equal(weak_augment(x, flip=False, pad_fraction=0.0), x)


def test_weak_flip_only_flips_some_samples() -> None:
    torch.manual_seed(0)
    x = _images(batch=64)
    out = weak_augment(x, flip=True, pad_fraction=0.0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    unchanged = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or u for f, u in zip(flipped, unchanged))
    assert 10 < sum(flipped) < 54  # per-sample coin, not one coin for the batch


def test_weak_crop_matches_reflect_padding() -> None:
    """Every output is some 16x16 window of the reflect-padded (2 px) input, and windows differ per sample."""
    torch.manual_seed(0)
    x = _images(batch=32)
    out = weak_augment(x, flip=False, pad_fraction=0.125)
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    offsets = []
    for o, p in zip(out, padded):
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(o, p[:, dy : dy + 16, dx : dx + 16])]
        assert matches, "output is not a window of the reflect-padded image"
        offsets.append(matches[0])
    assert len(set(offsets)) > 5


@pytest.mark.parametrize("style", STRONG_STYLES)
@pytest.mark.parametrize("channels", [1, 3])
def test_strong_keeps_uint8_shape(style: str, channels: int) -> None:
    torch.manual_seed(0)
    x = _images(batch=8, channels=channels, size=32 if channels == 3 else 16)
    out = strong_augment(x, style=style)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert not torch.equal(out, x)


@pytest.mark.parametrize("style", STRONG_STYLES)
def test_strong_randomness_is_per_sample(style: str) -> None:
    """The same image repeated in a batch must come out differently (own ops per sample)."""
    torch.manual_seed(0)
    x = _images(batch=1).repeat(32, 1, 1, 1)
    out = strong_augment(x, style=style, cutout=0.0, flip=False, pad_fraction=0.0)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 8


@pytest.mark.parametrize("style", STRONG_STYLES)
def test_strong_is_reproducible_under_manual_seed(style: str) -> None:
    x = _images()
    torch.manual_seed(5)
    first = strong_augment(x, style=style)
    torch.manual_seed(5)
    assert torch.equal(first, strong_augment(x, style=style))


def _ra_only(x: torch.Tensor, style: str, **kwargs) -> torch.Tensor:
    torch.manual_seed(11)
    return strong_augment(x, style=style, cutout=0.0, flip=False, pad_fraction=0.0, **kwargs)


@pytest.mark.parametrize("style", STRONG_STYLES)
def test_magnitude_changes_the_output(style: str) -> None:
    x = _images(batch=32)
    low, high = _ra_only(x, style, magnitude=1), _ra_only(x, style, magnitude=9)
    assert not torch.equal(low, high)
    # Stronger ops move pixels further from the input on average.
    assert (high.float() - x.float()).abs().mean() > (low.float() - x.float()).abs().mean()


@pytest.mark.parametrize("style", STRONG_STYLES)
def test_num_ops_acts(style: str) -> None:
    x = _images(batch=32)
    assert torch.equal(_ra_only(x, style, num_ops=0), x)
    one, three = _ra_only(x, style, num_ops=1), _ra_only(x, style, num_ops=3)
    assert not torch.equal(one, x)
    assert not torch.equal(one, three)
    assert (three.float() - x.float()).abs().mean() > (one.float() - x.float()).abs().mean()


def test_strong_rejects_bad_knobs() -> None:
    with pytest.raises(ValueError) as excinfo:
        strong_augment(_images(), style="autoaugment", magnitude=11)
    message = str(excinfo.value)
    assert "torchvision, fixmatch" in message and "magnitude" in message


def test_fixmatch_pool_has_the_14_ops() -> None:
    names = [name for name, _ in augment.FIXMATCH_OPS]
    assert names == [
        "Identity",
        "AutoContrast",
        "Equalize",
        "Rotate",
        "Solarize",
        "Color",
        "Posterize",
        "Contrast",
        "Brightness",
        "Sharpness",
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
    ]


@pytest.mark.parametrize("name", [name for name, _ in augment.FIXMATCH_OPS])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_fixmatch_op_runs_on_uint8(name: str, channels: int) -> None:
    op = dict(augment.FIXMATCH_OPS)[name]
    x = _images(batch=1, channels=channels)[0]
    out = op(x, 0.9, -1)
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_fixmatch_op_values_follow_the_magnitude_table() -> None:
    ops = dict(augment.FIXMATCH_OPS)
    x = _images(batch=1, channels=3)[0]
    # Brightness at s = 0.5, sign + -> factor 1 + 0.9*0.5 = 1.45
    assert torch.equal(ops["Brightness"](x, 0.5, 1), TF.adjust_brightness(x, 1.45))
    # Solarize at s = 0.9 -> threshold 255 * 0.1 = 25.5
    assert torch.equal(ops["Solarize"](x, 0.9, 1), TF.solarize(x, 25.5))
    # Posterize at s = 0.9 -> 8 - round(3.6) = 4 bits
    assert torch.equal(ops["Posterize"](x, 0.9, 1), x & 0xF0)
    # TranslateX at s = 1 on 16 px: int(150/331 * 16) = 7 px, grey fill on the exposed side
    shifted = ops["TranslateX"](x, 1.0, 1)
    assert torch.equal(shifted[:, :, 7:], x[:, :, :-7]) and bool((shifted[:, :, :7] == 128).all())


def test_cutout_is_a_grey_square_per_sample() -> None:
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16, dtype=torch.uint8)
    out = augment.apply_cutout(x, 0.5)
    grey = out == augment.CUTOUT_FILL
    areas = grey.flatten(1).sum(1)
    assert int(areas.max()) == 64  # an unclipped 8x8 square
    assert bool((areas > 0).all()) and bool(((out == 0) | grey).all())
    assert len({tuple(g.nonzero()[0].tolist()) for g in grey}) > 10  # boxes differ per sample


def test_cutmix_targets_match_the_pasted_area() -> None:
    batch, size = 8, 16
    images = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 3, size, size)
    targets = torch.eye(batch)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        mixed, mixed_targets = cutmix(images, targets, alpha=1.0, generator=gen)
        torch.testing.assert_close(mixed_targets.sum(1), torch.ones(batch), atol=1e-6, rtol=0)
        for i in range(batch):
            own_fraction = (mixed[i, 0] == i).float().mean().item()
            assert mixed_targets[i, i].item() == pytest.approx(own_fraction, abs=1e-6)
    assert torch.equal(images[:, 0, 0, 0], torch.arange(batch, dtype=torch.float32))  # input untouched


def test_cutmix_is_a_function_of_the_generator() -> None:
    images, targets = torch.rand(6, 3, 16, 16), torch.eye(6)
    a = cutmix(images, targets, 1.0, torch.Generator().manual_seed(3))
    b = cutmix(images, targets, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="alpha"):
        cutmix(images, targets, 0.0, torch.Generator())


@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("magnitude", [0, 5, 9, 10])
def test_torchvision_style_ops_equal_torchvisions_own_kernels(size: int, magnitude: int) -> None:
    """The batched "torchvision" style applies exactly v2.RandAugment's op at its value for M (11 bins)."""
    from torchvision.transforms import v2

    reference = v2.RandAugment(num_ops=1, magnitude=magnitude, num_magnitude_bins=11)
    space = reference._AUGMENTATION_SPACE
    assert [name for name, *_ in augment.TORCHVISION_OPS] == list(space)
    x = _images(batch=6, channels=3 if size == 32 else 1, size=size)
    for name, value_at, signed, apply in augment.TORCHVISION_OPS:
        magnitudes_fn, tv_signed = space[name]
        magnitudes = magnitudes_fn(11, size, size)
        expected = 0.0 if magnitudes is None else float(magnitudes[magnitude])
        assert signed == tv_signed and value_at(magnitude, size, size) == pytest.approx(expected, abs=1e-6), name
        for sign in (1.0, -1.0) if signed else (1.0,):
            ours = apply(x.clone(), sign * value_at(magnitude, size, size))
            theirs = torch.stack(
                [
                    reference._apply_image_or_video_transform(
                        image, name, sign * expected, interpolation=reference.interpolation, fill=reference._fill
                    )
                    for image in x
                ]
            )
            assert torch.equal(ours, theirs), (name, sign)


def test_torchvision_style_draws_ops_per_image() -> None:
    """Each image draws its own op: over many copies of one image every op shows up, none dominates."""
    torch.manual_seed(0)
    x = _images(batch=1).repeat(700, 1, 1, 1)
    out = strong_augment(x, style="torchvision", cutout=0.0, flip=False, pad_fraction=0.0, num_ops=1, magnitude=9)
    unchanged = sum(torch.equal(o, x[0]) for o in out)
    assert 700 / 14 * 0.5 < unchanged < 700 * 0.5  # Identity (1/14) and the ops that leave this image alone
    assert len({tuple(o.flatten().tolist()) for o in out}) > 14
