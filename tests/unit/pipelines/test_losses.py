"""Losses against hand-computed references (explicit tolerances)."""

import math

import pytest
import torch

from pipelines.losses import (
    align_distribution,
    alignment_target,
    class_balanced_weights,
    current_p_model,
    distillation_loss,
    fixmatch_targets,
    fixmatch_unlabeled_loss,
    initial_p_model,
    supervised_loss,
    update_moving_average,
)


def _log_softmax_row(row: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in row))
    return [v - norm for v in row]


def test_supervised_loss_hard_targets_is_mean_negative_log_likelihood():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    expected = -(_log_softmax_row([2.0, 0.0, 0.0])[0] + _log_softmax_row([0.0, 1.0, 3.0])[1]) / 2
    assert supervised_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, abs=1e-6)


def test_supervised_loss_label_smoothing_mixes_with_uniform():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    log_p = _log_softmax_row([2.0, 0.0, 0.0])
    smoothed = [0.7 + 0.1, 0.1, 0.1]  # (1 - 0.3) * onehot + 0.3 / 3
    expected = -sum(y * lp for y, lp in zip(smoothed, log_p))
    got = supervised_loss(logits, torch.tensor([0]), label_smoothing=0.3).item()
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(supervised_loss(logits, torch.tensor([0])).item(), abs=1e-3)


def test_supervised_loss_soft_targets():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    lp0, lp1 = _log_softmax_row([2.0, 0.0, 0.0]), _log_softmax_row([0.0, 1.0, 3.0])
    expected_soft = -((0.5 * lp0[0] + 0.5 * lp0[1]) + lp1[2]) / 2
    assert supervised_loss(logits, soft).item() == pytest.approx(expected_soft, abs=1e-6)


def test_supervised_loss_rejects_float_class_ids():
    with pytest.raises(ValueError, match="int64"):
        supervised_loss(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


def test_fixmatch_unlabeled_loss_divides_by_whole_unlabeled_batch():
    logits_strong = torch.tensor([[1.0, 2.0], [0.5, 0.0], [3.0, 1.0], [0.0, 0.0]])
    probs_weak = torch.tensor([[0.98, 0.02], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]])  # only row 0 >= 0.95
    loss, mask = fixmatch_unlabeled_loss(logits_strong, probs_weak, threshold=0.95)
    ce_row0 = -_log_softmax_row([1.0, 2.0])[0]  # pseudo-label = argmax q = class 0
    assert mask.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert loss.item() == pytest.approx(ce_row0 / 4, abs=1e-6)
    assert loss.item() != pytest.approx(ce_row0, abs=1e-3)  # not divided by the confident count


def test_fixmatch_unlabeled_loss_has_no_gradient_through_weak_probs():
    logits_strong = torch.zeros(2, 3, requires_grad=True)
    probs_weak = torch.tensor([[0.97, 0.02, 0.01], [0.2, 0.3, 0.5]], requires_grad=True)
    loss, _ = fixmatch_unlabeled_loss(logits_strong, probs_weak, threshold=0.95)
    loss.backward()
    assert probs_weak.grad is None
    assert logits_strong.grad is not None and logits_strong.grad[1].abs().sum() == 0  # masked row: no gradient


def test_alignment_target_by_hand_and_temperature_endpoints():
    p_labeled = torch.tensor([0.5, 0.3, 0.2])
    # sqrt: [0.707107, 0.547723, 0.447214] / 1.702044
    assert torch.allclose(alignment_target(p_labeled, 0.5), torch.tensor([0.415446, 0.321803, 0.262751]), atol=1e-5)
    assert torch.allclose(alignment_target(p_labeled, 1.0), p_labeled, atol=1e-7)
    assert torch.allclose(alignment_target(p_labeled, 0.0), torch.full((3,), 1 / 3), atol=1e-7)
    # an integer class histogram works too
    assert torch.allclose(alignment_target(torch.tensor([50, 30, 20]), 1.0), p_labeled, atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        alignment_target(p_labeled, -1.0)


def test_align_distribution_by_hand():
    q = torch.tensor([[0.6, 0.3, 0.1]])
    p_model, p_target = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    # q * p_target / p_model = [0.24, 0.30, 0.25], sum 0.79
    expected = torch.tensor([[0.303797, 0.379747, 0.316456]])
    assert torch.allclose(align_distribution(q, p_model, p_target), expected, atol=1e-5)
    # p_model == p_target leaves q unchanged
    assert torch.allclose(align_distribution(q, p_model, p_model), q, atol=1e-7)


def test_update_moving_average_by_hand():
    p = update_moving_average(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), momentum=0.9)
    assert torch.allclose(p, torch.tensor([0.55, 0.45]), atol=1e-7)


def _p_model_after(estimate: str, batch_means: list[torch.Tensor], momentum: float = 0.999) -> torch.Tensor:
    running = initial_p_model(batch_means[0].numel(), estimate)
    for mean in batch_means:
        running = update_moving_average(running, mean, momentum)
    return current_p_model(running, len(batch_means), momentum, estimate)


def test_debiased_p_model_is_the_weighted_mean_of_the_batches_seen_from_the_first_step():
    skewed = torch.tensor([0.7, 0.2, 0.1])
    # one update: exactly the batch mean (the uniform start left 0.999 of 1/3 in it)
    assert torch.allclose(_p_model_after("debiased_ema", [skewed]), skewed, atol=1e-6)
    # a constant batch mean is tracked exactly at every k, the 600 steps of a short CReST generation included
    assert torch.allclose(_p_model_after("debiased_ema", [skewed] * 600), skewed, atol=1e-5)
    # two different batches: (m (1 - m) a + (1 - m) b) / (1 - m^2) = (m a + b) / (1 + m)
    a, b, m = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.9
    assert torch.allclose(_p_model_after("debiased_ema", [a, b], m), (m * a + b) / (1 + m), atol=1e-6)


def test_uniform_start_p_model_still_lags_after_600_steps():
    """The old estimate, kept as crest.p_model_estimate=uniform_ema: 0.999 ** 600 = 0.55 of the start remains."""
    skewed = torch.tensor([0.7, 0.2, 0.1])
    lagging = _p_model_after("uniform_ema", [skewed] * 600)
    weight = 0.999**600
    assert torch.allclose(lagging, weight * torch.full((3,), 1 / 3) + (1 - weight) * skewed, atol=1e-5)
    assert lagging[0] < 0.5  # far from the 0.7 the model predicts


def test_p_model_estimate_rejects_unknown_names_and_momentum_one():
    with pytest.raises(ValueError, match="debiased_ema"):
        initial_p_model(3, "window")
    with pytest.raises(ValueError, match="momentum"):
        current_p_model(torch.zeros(3), 5, 1.0, "debiased_ema")
    with pytest.raises(ValueError, match="at least one update"):
        current_p_model(torch.zeros(3), 0, 0.9, "debiased_ema")


def test_fixmatch_targets_threshold_applies_after_alignment():
    q = torch.tensor([[0.96, 0.02, 0.02], [0.10, 0.02, 0.88]])
    p_model, p_target = torch.tensor([0.8, 0.1, 0.1]), torch.full((3,), 1 / 3)
    targets, mask = fixmatch_targets(q, 0.95)
    assert targets.tolist() == [0, 2] and mask.tolist() == [1.0, 0.0]
    # aligned: row 0 -> [1.2, .2, .2]/1.6 = [0.75, ...] (drops out); row 1 -> [.125, .2, 8.8]/9.125, max 0.9644 (enters)
    targets, mask = fixmatch_targets(q, 0.95, p_model=p_model, p_target=p_target)
    assert targets.tolist() == [0, 2] and mask.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="both"):
        fixmatch_targets(q, 0.95, p_model=p_model)
    loss, mask = fixmatch_unlabeled_loss(torch.zeros(2, 3), q, 0.95, p_model=p_model, p_target=p_target)
    assert mask.tolist() == [0.0, 1.0]
    assert loss.item() == pytest.approx(math.log(3) / 2, abs=1e-6)


def test_distillation_loss_by_hand():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    targets = torch.tensor([0, 2])
    temp, alpha = 2.0, 0.7
    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        log_s = _log_softmax_row([v / temp for v in s_row])
        log_t = _log_softmax_row([v / temp for v in t_row])
        kl += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_t, log_s))
    kl /= 2  # batchmean: sum / B
    ce = -(_log_softmax_row(student[0].tolist())[0] + _log_softmax_row(student[1].tolist())[2]) / 2
    expected = (1 - alpha) * ce + alpha * temp**2 * kl
    got = distillation_loss(student, teacher, targets, temp, alpha)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert distillation_loss(student, teacher, None, temp, alpha).item() == pytest.approx(temp**2 * kl, abs=1e-6)


def _soft_grad_norm(temperature: float, with_t_squared: bool = True) -> float:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 10, generator=generator, requires_grad=True)
    teacher = torch.randn(8, 10, generator=generator)
    loss = distillation_loss(student, teacher, None, temperature, alpha=1.0)
    if not with_t_squared:
        loss = loss / temperature**2
    loss.backward()
    return student.grad.norm().item()


def test_distillation_soft_gradient_scale_is_independent_of_temperature():
    # d(T^2 KL)/dz_s = T (softmax(z_s/T) - softmax(z_t/T)) / B ~ (z_s - z_t)_centered / (C B) for large T
    ratio = _soft_grad_norm(8.0) / _soft_grad_norm(4.0)
    assert ratio == pytest.approx(1.0, abs=0.2)
    # without the T^2 factor the gradient would shrink by ~1/T^2: doubling T divides it by ~4
    ratio_plain = _soft_grad_norm(8.0, with_t_squared=False) / _soft_grad_norm(4.0, with_t_squared=False)
    assert ratio_plain == pytest.approx(0.25, abs=0.05)


def test_distillation_gradient_matches_closed_form():
    student = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0, 0.0]])
    temp = 3.0
    distillation_loss(student, teacher, None, temp, alpha=1.0).backward()
    expected = temp * (torch.softmax(student.detach() / temp, 1) - torch.softmax(teacher / temp, 1))
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_class_balanced_weights_by_hand():
    # (1 - 0.9) / (1 - 0.9^n) for n = 100, 10, 1: [0.1000027, 0.1535340, 1.0], normalised to sum 3
    weights = class_balanced_weights([100, 10, 1], beta=0.9)
    assert torch.allclose(weights, torch.tensor([0.239329, 0.367442, 2.393229]), atol=1e-5)
    assert weights.sum().item() == pytest.approx(3.0, abs=1e-5)
    assert torch.allclose(class_balanced_weights([100, 10, 1], beta=0.0), torch.ones(3))
    with pytest.raises(ValueError, match="positive count"):
        class_balanced_weights([10, 0], beta=0.9)
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights([10, 1], beta=1.0)
