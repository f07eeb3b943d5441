"""Class-balanced softmax, sigmoid and focal losses (Cui et al. 2019) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.class_balanced import class_balanced_loss, focal_terms
from pipelines.losses import class_balanced_weights

# counts (10, 2), beta 0.5: E = (1 - 0.5^10) / 0.5 = 1.998046875 and (1 - 0.25) / 0.5 = 1.5;
# w ∝ 1/E = (0.5004888, 0.6666667), scaled to sum to 2 classes: (0.8576214, 1.1423786).
WEIGHTS = (0.8576214, 1.1423786)
# one sample, logits (2, -1), true class 0: -log sigmoid(2) = log(1 + e^-2) = 0.1269280 for the true
# class, -log(1 - sigmoid(-1)) = log(1 + e^-1) = 0.3132617 for the other.
TRUE_TERM, OTHER_TERM = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))


def _one_sample() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[2.0, -1.0]]), torch.tensor([0])


def test_the_weights_are_the_effective_number_ones() -> None:
    assert class_balanced_weights([10, 2], 0.5).tolist() == pytest.approx(WEIGHTS, abs=1e-6)


def test_sigmoid_sums_the_per_class_binary_terms_times_the_true_class_weight() -> None:
    logits, targets = _one_sample()
    weights = torch.tensor(WEIGHTS)
    assert pytest.approx(0.4401897, abs=1e-6) == TRUE_TERM + OTHER_TERM
    got = class_balanced_loss(logits, targets, "sigmoid", weights)
    assert float(got) == pytest.approx(WEIGHTS[0] * 0.4401897, abs=1e-6)
    assert float(class_balanced_loss(logits, targets, "sigmoid")) == pytest.approx(0.4401897, abs=1e-6)


def test_focal_modulates_each_term_by_one_minus_p_t_to_the_gamma() -> None:
    logits, targets = _one_sample()
    # p_t = sigmoid(2) = 0.8807971 and sigmoid(1) = 0.7310586:
    # (0.1192029)^2 * 0.1269280 + (0.2689414)^2 * 0.3132617 = 0.0018035 + 0.0226581 = 0.0244616
    expected = 0.1192029**2 * TRUE_TERM + 0.2689414**2 * OTHER_TERM
    assert expected == pytest.approx(0.0244616, abs=1e-6)
    got = class_balanced_loss(logits, targets, "focal", torch.tensor(WEIGHTS), gamma=2.0)
    assert float(got) == pytest.approx(WEIGHTS[0] * 0.0244616, abs=1e-6)


def test_focal_with_gamma_zero_is_the_sigmoid_loss_and_gamma_acts() -> None:
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    sigmoid = class_balanced_loss(logits, targets, "sigmoid")
    assert torch.allclose(class_balanced_loss(logits, targets, "focal", gamma=0.0), sigmoid)
    assert float(class_balanced_loss(logits, targets, "focal", gamma=2.0)) < float(sigmoid)


def test_softmax_is_the_batch_mean_of_the_weighted_cross_entropies() -> None:
    """Cui et al.: mean over the batch of w_y * CE; torch's weighted mean (/ sum w_y) rescaled it per batch."""
    logits, targets = torch.tensor([[2.0, -1.0], [0.0, 0.0]]), torch.tensor([0, 1])
    # CE = log(1 + e^-3) = 0.0485874 and log 2 = 0.6931472
    expected = (WEIGHTS[0] * 0.0485874 + WEIGHTS[1] * 0.6931472) / 2
    got = class_balanced_loss(logits, targets, "ce", torch.tensor(WEIGHTS))
    assert float(got) == pytest.approx(expected, abs=1e-6)
    plain = class_balanced_loss(logits, targets, "ce", torch.ones(2))
    assert float(plain) == pytest.approx((0.0485874 + 0.6931472) / 2, abs=1e-6)
    smoothed = class_balanced_loss(logits, targets, "ce", torch.tensor(WEIGHTS), label_smoothing=0.2)
    unweighted = torch.nn.functional.cross_entropy(logits, targets, reduction="none", label_smoothing=0.2)
    assert float(smoothed) == pytest.approx(float((torch.tensor(WEIGHTS) * unweighted).mean()), abs=1e-6)


def test_soft_rows_weight_by_their_mass_and_smoothing_keeps_the_true_class_weight() -> None:
    logits, targets = _one_sample()
    weights = torch.tensor(WEIGHTS)
    hard = class_balanced_loss(logits, targets, "focal", weights, gamma=1.0)
    soft = class_balanced_loss(logits, torch.tensor([[1.0, 0.0]]), "focal", weights, gamma=1.0)
    assert torch.allclose(hard, soft)
    smoothed = class_balanced_loss(logits, targets, "sigmoid", weights, label_smoothing=0.2)
    # targets (0.9, 0.1): the terms change, the weight stays w_0
    terms = focal_terms(logits, torch.tensor([[0.9, 0.1]]), 0.0).sum()
    assert float(smoothed) == pytest.approx(WEIGHTS[0] * float(terms), abs=1e-6)


def test_unknown_loss_and_negative_gamma_are_refused() -> None:
    logits, targets = _one_sample()
    with pytest.raises(ValueError, match="valid: ce, focal, sigmoid"):
        class_balanced_loss(logits, targets, "hinge")
    with pytest.raises(ValueError, match="gamma"):
        class_balanced_loss(logits, targets, "focal", gamma=-1.0)
