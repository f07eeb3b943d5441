"""Tests for pipelines.models: every registry entry, dropout, stochastic depth, and the CPU budget of small_cnn."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth

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


def test_wrn_batchnorm_statistics_follow_the_data_from_the_first_batches() -> None:
    """At momentum 0.001 the running mean was still ~98% the initial 0 after 20 batches of mean-3 data."""
    from pipelines.models import WarmStartBatchNorm2d

    torch.manual_seed(0)
    bn = WarmStartBatchNorm2d(4).train()
    for _ in range(20):
        bn(torch.randn(8, 4, 5, 5) + 3.0)
    assert torch.allclose(bn.running_mean, torch.full((4,), 3.0), atol=0.1)
    assert torch.allclose(bn.running_var, torch.ones(4), atol=0.15)
    bn.eval()(torch.randn(8, 4, 5, 5))  # evaluation moves nothing
    assert bn.batches_seen == 20 and int(bn.num_batches_tracked) == 20


def test_wrn_batchnorm_is_fixmatchs_after_the_warm_up_and_after_a_reload() -> None:
    from pipelines.models import WarmStartBatchNorm2d

    bn = WarmStartBatchNorm2d(2).train()
    bn.num_batches_tracked.fill_(5000)  # a checkpoint far into training
    fresh = WarmStartBatchNorm2d(2).train()
    fresh.load_state_dict(bn.state_dict())
    before = fresh.running_mean.clone()
    fresh(torch.full((4, 2, 3, 3), 10.0))
    assert fresh.momentum == BN_MOMENTUM  # not a restarted warm-up that would replace the statistics
    assert torch.allclose(fresh.running_mean, before + BN_MOMENTUM * (10.0 - before))


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_resnet_stem_keeps_small_images_resolution(name: str) -> None:
    model = create_model(name, num_classes=10, in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    feature = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(torch.randn(1, 1, 16, 16))))))
    assert feature.shape[-2:] == (16, 16)


# --- stochastic depth -------------------------------------------------------------------------

RESIDUAL = ["wrn28_2", "resnet18"]


def _drop_probs(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, StochasticDepth)]


@pytest.mark.parametrize("name", RESIDUAL)
def test_stochastic_depth_keeps_state_dict_keys(name: str) -> None:
    plain = create_model(name, num_classes=5, in_channels=3)
    noisy = create_model(name, num_classes=5, in_channels=3, stochastic_depth=0.2)
    assert list(plain.state_dict()) == list(noisy.state_dict())
    noisy.load_state_dict(plain.state_dict())  # checkpoints load either way
    plain.load_state_dict(noisy.state_dict())


@pytest.mark.parametrize("name", RESIDUAL)
def test_stochastic_depth_is_the_identity_in_eval(name: str) -> None:
    torch.manual_seed(0)
    plain = create_model(name, num_classes=5, in_channels=3).eval()
    noisy = create_model(name, num_classes=5, in_channels=3, stochastic_depth=0.2).eval()
    noisy.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(plain(x), noisy(x))


@pytest.mark.parametrize("name", RESIDUAL)
def test_stochastic_depth_drops_blocks_in_training(name: str) -> None:
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(0)
    noisy = create_model(name, num_classes=5, in_channels=3, stochastic_depth=0.9).train()
    plain = create_model(name, num_classes=5, in_channels=3).train()
    plain.load_state_dict(noisy.state_dict())
    with torch.no_grad():
        torch.manual_seed(1)
        first = noisy(x)
        torch.manual_seed(2)
        second = noisy(x)
        torch.manual_seed(1)
        assert torch.equal(plain(x), plain(x)), "without stochastic depth training mode is deterministic here"
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("name", RESIDUAL)
def test_stochastic_depth_grows_linearly_to_the_last_block(name: str) -> None:
    probs = _drop_probs(create_model(name, num_classes=5, in_channels=3, stochastic_depth=0.2))
    n = 12 if name == "wrn28_2" else 8  # WRN-28: 3 groups x 4 blocks; ResNet-18: 4 layers x 2 blocks
    assert probs == pytest.approx([0.2 * (i + 1) / n for i in range(n)])
    assert probs[-1] == pytest.approx(0.2)  # survival 0.8 at the last block


def test_resnet34_stochastic_depth_covers_every_block() -> None:
    model = create_model("resnet34", num_classes=5, in_channels=3, stochastic_depth=0.5)
    assert _drop_probs(model) == pytest.approx([0.5 * (i + 1) / 16 for i in range(16)])
    assert list(model.state_dict()) == list(create_model("resnet34", num_classes=5, in_channels=3).state_dict())


def test_small_cnn_rejects_stochastic_depth_naming_the_residual_models() -> None:
    with pytest.raises(ValueError, match="stochastic_depth") as excinfo:
        create_model("small_cnn", num_classes=10, in_channels=1, stochastic_depth=0.2)
    assert all(name in str(excinfo.value) for name in ("wrn28_2", "resnet18", "resnet34"))
    create_model("small_cnn", num_classes=10, in_channels=1, stochastic_depth=0.0)  # 0 is fine


def test_bad_stochastic_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="stochastic_depth"):
        create_model("wrn28_2", num_classes=10, in_channels=3, stochastic_depth=1.0)


def test_the_torch_free_model_table_matches_the_registry() -> None:
    """pipelines.model_names lets the config check run without torch; it must agree with MODELS."""
    from pipelines import model_names

    assert tuple(MODELS) == model_names.MODEL_NAMES
    assert set(model_names.RESIDUAL_MODELS) <= set(MODELS)
    counted = {
        name: parameter_count(create_model(name, model_names.PROBE_CLASSES, model_names.PROBE_CHANNELS))
        for name in MODELS
    }
    assert counted == model_names.PROBE_PARAMETERS


def test_small_cnn_keeps_a_4x4_map_for_its_last_conv_on_native_8x8_digits() -> None:
    """On 8x8 inputs only the first pool acts (two pools squeezed digits to 2x2); 16x16 and 32x32 are unchanged."""
    model = create_model("small_cnn", 10, 1).eval()
    sizes = {}
    for side in (8, 16, 32):
        x = torch.zeros(2, 1, side, side)
        for index, layer in enumerate(model.features):
            x = layer(x)
            if index == 4:  # the last conv block
                sizes[side] = tuple(x.shape[-2:])
    assert sizes == {8: (4, 4), 16: (4, 4), 32: (8, 8)}
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
