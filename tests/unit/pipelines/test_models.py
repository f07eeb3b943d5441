"""Tests for pipelines.models: every registry entry, dropout, and the CPU budget of small_cnn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.models import BN_MOMENTUM, MODELS, create_model, parameter_count


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
def test_every_model_gives_logits(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=shape[0])
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_one_step(name: str) -> None:
    """Gradients reach the first conv (the adapted stem) and BN works in train mode."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 16, 16)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dropout_acts_before_the_classifier(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    plain = create_model(name, num_classes=5, in_channels=3, dropout=0.0).train()
    dropped = create_model(name, num_classes=5, in_channels=3, dropout=0.5).train()
    dropped.load_state_dict(plain.state_dict())
    assert isinstance(dropped.fc, nn.Linear)
    torch.manual_seed(1)
    with torch.no_grad():
        a, b = plain(x), dropped(x)
    assert not torch.allclose(a, b)
    dropped.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), dropped(x), atol=1e-5)  # eval: dropout off


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError) as excinfo:
        create_model("vit", num_classes=10, in_channels=3)
    assert all(name in str(excinfo.value) for name in MODELS)


def test_bad_dropout_is_rejected() -> None:
    with pytest.raises(ValueError, match="dropout"):
        create_model("small_cnn", num_classes=10, in_channels=1, dropout=1.0)


def test_parameter_count_by_hand() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert parameter_count(model) == 3 * 4 + 4 + 4 + 4  # BN running stats are buffers, not counted


def test_small_cnn_is_small() -> None:
    count = parameter_count(create_model("small_cnn", num_classes=10, in_channels=1))
    assert 50_000 <= count <= 150_000


def test_wrn28_2_matches_fixmatch() -> None:
    model = create_model("wrn28_2", num_classes=10, in_channels=3)
    # WRN-28-2 for 10 classes: 1,467,610 parameters (FixMatch / USB report ~1.47M).
    assert parameter_count(model) == 1_467_610
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == BN_MOMENTUM == 0.001 for m in bns)
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.1}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 2 * 12  # stem + 2 per block, 4 blocks x 3 groups


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_resnet_stem_keeps_small_images_resolution(name: str) -> None:
    model = create_model(name, num_classes=10, in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    feature = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(torch.randn(1, 1, 16, 16))))))
    assert feature.shape[-2:] == (16, 16)
