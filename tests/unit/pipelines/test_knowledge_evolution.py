"""Unit tests for pipelines.knowledge_evolution (docs/ALGORITHMS.md, Knowledge Evolution)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from pipelines.knowledge_evolution import (
    SPLIT_MODES,
    extract_slim_network,
    fit_fraction,
    make_split_masks,
    masks_from_state,
    masks_to_state,
    reinitialize_reset_hypothesis,
)


class TinyCNN(nn.Module):
    """Odd widths (so ceil matters), a conv bias, an intermediate Linear, 1-channel input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 7, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(7)
        self.conv2 = nn.Conv2d(7, 13, 3, padding=1, stride=2, bias=True)
        self.bn2 = nn.BatchNorm2d(13)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(13, 9)
        self.fc = nn.Linear(9, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.hidden(torch.flatten(self.pool(x), 1)))
        return self.fc(x)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny(seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN()
    _randomize_norm_state(model, seed)
    return model


def _resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = resnet18(num_classes=10, weights=None)
    _randomize_norm_state(model, seed)
    return model


def _randomize_norm_state(model: nn.Module, seed: int) -> None:
    """Give BatchNorm non-default params and running stats, so 'untouched' means something."""
    gen = _gen(seed + 1000)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(torch.randn(n, generator=gen))
                module.running_mean.copy_(torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.num_batches_tracked.fill_(7)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- mask shapes


def test_mask_keys_cover_convs_and_linears_but_not_bn_or_classifier_bias():
    masks = make_split_masks(_tiny(), 0.5, "kels", _gen())
    assert set(masks) == {"conv1.weight", "conv2.weight", "conv2.bias", "hidden.weight", "hidden.bias", "fc.weight"}

    model = _resnet()
    masks = make_split_masks(model, 0.5, "kels", _gen())
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 20  # 17 3x3/7x7 convs + 3 downsample 1x1 convs
    assert "layer2.0.downsample.0.weight" in masks
    assert set(masks) == convs | {"fc.weight"}


@pytest.mark.parametrize("split_rate", [0.5, 0.3, 0.8])
def test_kels_fractions_follow_the_ceil_rule(split_rate):
    model = _tiny()
    fractions = fit_fraction(make_split_masks(model, split_rate, "kels", _gen()))

    def c(n: int) -> int:
        return math.ceil(split_rate * n)

    expected = {
        "conv1.weight": c(7) / 7,  # stem: every input channel kept
        "conv2.weight": c(13) * c(7) / (13 * 7),
        "conv2.bias": c(13) / 13,
        "hidden.weight": c(9) * c(13) / (9 * 13),
        "hidden.bias": c(9) / 9,
        "fc.weight": c(9) / 9,  # classifier: every output row kept
    }
    assert fractions == pytest.approx(expected, abs=1e-12)


def test_kels_mask_is_a_leading_block():
    masks = make_split_masks(_tiny(), 0.5, "kels", _gen())
    conv2 = masks["conv2.weight"]  # [13, 7, 3, 3] -> 7 filters x 4 input channels
    assert conv2[:7, :4].all()
    assert not conv2[7:].any() and not conv2[:, 4:].any()
    assert masks["conv2.bias"].tolist() == [True] * 7 + [False] * 6


def test_kels_first_conv_keeps_all_input_channels():
    masks = make_split_masks(_resnet(), 0.5, "kels", _gen())
    stem = masks["conv1.weight"]  # [64, 3, 7, 7]
    assert stem[:32].all()
    assert not stem[32:].any()
    second = masks["layer1.0.conv1.weight"]  # [64, 64, 3, 3]: inputs are cut
    assert not second[:, 32:].any()


def test_kels_classifier_keeps_all_output_rows():
    masks = make_split_masks(_resnet(), 0.5, "kels", _gen())
    fc = masks["fc.weight"]  # [10, 512]
    assert fc[:, :256].all()
    assert not fc[:, 256:].any()
    assert fc.any(dim=1).all()


@pytest.mark.parametrize("split_rate", [0.5, 0.7])
def test_wels_fraction_is_close_to_split_rate(split_rate):
    masks = make_split_masks(_resnet(), split_rate, "wels", _gen(3))
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    # 11.2M Bernoulli draws: std 1.5e-4, so 2e-3 is > 10 sigma.
    assert kept / total == pytest.approx(split_rate, abs=2e-3)
    for name, fraction in fit_fraction(masks).items():
        n = masks[name].numel()
        if n >= 10_000:
            assert fraction == pytest.approx(split_rate, abs=6 * 0.5 / math.sqrt(n)), name


def test_wels_masks_depend_on_the_generator_only():
    model = _tiny()
    first = make_split_masks(model, 0.5, "wels", _gen(1))
    again = make_split_masks(model, 0.5, "wels", _gen(1))
    other = make_split_masks(model, 0.5, "wels", _gen(2))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_masks_are_cpu_bool():
    masks = make_split_masks(_tiny(), 0.5, "wels", _gen())
    assert all(m.dtype == torch.bool and m.device.type == "cpu" for m in masks.values())


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("split_rate", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_split_rate_is_rejected_with_a_fix(split_rate):
    with pytest.raises(ValueError) as info:
        make_split_masks(_tiny(), split_rate, "kels", _gen())
    message = str(info.value)
    assert "split_rate" in message and "expected" in message
    assert f"got {split_rate!r}" in message and "fix" in message


def test_bad_mode_is_rejected_with_the_valid_modes():
    with pytest.raises(ValueError) as info:
        make_split_masks(_tiny(), 0.5, "kells", _gen())
    message = str(info.value)
    assert "got 'kells'" in message
    assert all(mode in message for mode in SPLIT_MODES)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as info:
        make_split_masks(_tiny(), 2.0, "random", _gen())
    assert "split_rate" in str(info.value) and "'random'" in str(info.value)


def test_masks_for_another_model_are_rejected():
    masks = make_split_masks(_tiny(), 0.5, "kels", _gen())
    with pytest.raises(ValueError, match="do not match"):
        reinitialize_reset_hypothesis(_resnet(), masks, _gen())


# ---------------------------------------------------------------- persistence


@pytest.mark.parametrize("mode", SPLIT_MODES)
def test_masks_survive_a_weights_only_round_trip(mode):
    masks = make_split_masks(_tiny(), 0.5, mode, _gen(5))
    buffer = io.BytesIO()
    torch.save(masks_to_state(masks), buffer)
    buffer.seek(0)
    loaded = masks_from_state(torch.load(buffer, weights_only=True))
    assert set(loaded) == set(masks)
    for name, mask in masks.items():
        assert loaded[name].dtype == torch.bool
        assert torch.equal(loaded[name], mask), name


def test_masks_from_state_rejects_corrupt_entries():
    state = {"a.weight": torch.tensor([0, 2], dtype=torch.uint8), "b.weight": torch.tensor([0.0, 1.0])}
    with pytest.raises(ValueError) as info:
        masks_from_state(state)
    message = str(info.value)
    assert "a.weight" in message and "b.weight" in message and "fix" in message


# ---------------------------------------------------------------- re-initialisation


@pytest.mark.parametrize("mode", SPLIT_MODES)
def test_reinit_changes_exactly_the_reset_hypothesis(mode):
    model = _tiny()
    masks = make_split_masks(model, 0.5, mode, _gen(1))
    before = _snapshot(model)
    reinitialize_reset_hypothesis(model, masks, _gen(2))
    after = model.state_dict()
    assert set(masks) < set(after)
    for name, old in before.items():
        new = after[name]
        if name not in masks:  # BN params, running stats, classifier bias
            assert torch.equal(new, old), name
            continue
        keep = masks[name]
        assert torch.equal(new[keep], old[keep]), name
        assert (new[~keep] != old[~keep]).all(), name


def test_reinit_on_resnet_leaves_bn_and_classifier_bias_bitwise_identical():
    model = _resnet()
    masks = make_split_masks(model, 0.5, "kels", _gen())
    before = _snapshot(model)
    reinitialize_reset_hypothesis(model, masks, _gen(4))
    after = model.state_dict()
    untouched = [k for k in before if k not in masks]
    assert "fc.bias" in untouched and "bn1.running_var" in untouched
    assert all(torch.equal(after[k], before[k]) for k in untouched)
    changed = after["layer4.1.conv2.weight"][~masks["layer4.1.conv2.weight"]]
    assert (changed != before["layer4.1.conv2.weight"][~masks["layer4.1.conv2.weight"]]).all()


def test_reinit_draws_pytorch_default_kaiming_uniform():
    """The reset values of the first masked tensor equal a hand-made
    kaiming_uniform_(a=sqrt(5)) draw from the same seed; all stay within the
    default bound 1/sqrt(fan_in)."""
    model = _tiny()
    masks = make_split_masks(model, 0.5, "kels", _gen())
    reinitialize_reset_hypothesis(model, masks, _gen(11))
    reference = torch.empty(7, 1, 3, 3)
    nn.init.kaiming_uniform_(reference, a=math.sqrt(5), generator=_gen(11))
    reset = ~masks["conv1.weight"]
    assert torch.equal(model.conv1.weight.detach()[reset], reference[reset])
    bounds = {
        "conv1.weight": 1 / 3,
        "conv2.weight": 1 / math.sqrt(63),
        "conv2.bias": 1 / math.sqrt(63),
        "hidden.weight": 1 / math.sqrt(13),
        "hidden.bias": 1 / math.sqrt(13),
        "fc.weight": 1 / 3,
    }
    params = dict(model.named_parameters())
    for name, bound in bounds.items():
        values = params[name].detach()[~masks[name]]
        assert values.abs().max() <= bound + 1e-7, name


def test_reinit_is_deterministic_for_a_seed():
    masks = make_split_masks(_tiny(), 0.5, "wels", _gen(1))
    a, b, c = _tiny(), _tiny(), _tiny()
    reinitialize_reset_hypothesis(a, masks, _gen(9))
    reinitialize_reset_hypothesis(b, masks, _gen(9))
    reinitialize_reset_hypothesis(c, masks, _gen(10))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv2.weight"], sc["conv2.weight"])


def test_reinit_keeps_parameter_identity():
    """Updated in place: an optimizer built before the re-init still sees the weights."""
    model = _tiny()
    weight = model.conv2.weight
    reinitialize_reset_hypothesis(model, make_split_masks(model, 0.5, "kels", _gen()), _gen(1))
    assert model.conv2.weight is weight


# ---------------------------------------------------------------- slim network


def _expected_slim_count(model: nn.Module, masks: dict[str, torch.Tensor]) -> int:
    """Kept weights and biases from the masks, the whole classifier bias, and two
    BN parameters per kept channel of the conv each BN follows (BN i reads conv i)."""
    count = sum(int(m.sum()) for m in masks.values())
    count += sum(
        p.numel()
        for n, p in model.named_parameters()
        if n.endswith("bias") and n not in masks and "bn" not in n and "downsample.1" not in n
    )
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms)
    for conv in convs:
        kept_out = int(masks[f"{conv}.weight"].flatten(1).any(dim=1).sum())
        count += 2 * kept_out
    return count


def _zero_reset(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].dtype))
    return model


@pytest.mark.parametrize("split_rate", [0.5, 0.3])
def test_slim_tiny_cnn_counts_and_matches_the_zeroed_dense_net(split_rate):
    model = _tiny().eval()
    masks = make_split_masks(model, split_rate, "kels", _gen())
    before = _snapshot(model)
    slim = extract_slim_network(model, masks).eval()
    assert sum(p.numel() for p in slim.parameters()) == _expected_slim_count(model, masks)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert slim.conv2.weight.shape == (math.ceil(13 * split_rate), math.ceil(7 * split_rate), 3, 3)
    x = torch.randn(4, 1, 16, 16, generator=_gen(7))
    with torch.no_grad():
        out = slim(x)
        dense = _zero_reset(model, masks)(x)
    assert out.shape == (4, 10)
    torch.testing.assert_close(out, dense, rtol=1e-5, atol=1e-5)


def test_slim_resnet18_counts_and_matches_the_zeroed_dense_net():
    model = _resnet().eval()
    masks = make_split_masks(model, 0.5, "kels", _gen())
    slim = extract_slim_network(model, masks).eval()
    expected = _expected_slim_count(model, masks)
    assert sum(p.numel() for p in slim.parameters()) == expected
    assert expected < 0.3 * sum(p.numel() for p in model.parameters())
    assert slim.fc.weight.shape == (10, 256)
    assert slim.layer2[0].downsample[1].running_mean.shape == (64,)
    x = torch.randn(2, 3, 32, 32, generator=_gen(8))
    with torch.no_grad():
        out = slim(x)
        dense = _zero_reset(model, masks)(x)
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, dense, rtol=1e-4, atol=1e-5)


def test_slim_extraction_rejects_wels_masks():
    model = _tiny()
    masks = make_split_masks(model, 0.5, "wels", _gen())
    with pytest.raises(ValueError, match="kels"):
        extract_slim_network(model, masks)


def test_fit_fraction_reports_the_share_of_ones():
    masks = {"w": torch.tensor([True, False, False, True]), "v": torch.ones(3, dtype=torch.bool)}
    assert fit_fraction(masks) == {"w": 0.5, "v": 1.0}
