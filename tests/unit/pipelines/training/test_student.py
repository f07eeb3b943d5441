"""The KE / Noisy Student / distillation loop: its losses against hand-computed references, and every knob acting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipelines.losses import distillation_loss
from pipelines.models import create_model
from pipelines.training.student import StudentSettings, labeled_loss, pseudo_loss, train_student


def test_labeled_loss_with_a_teacher_is_hintons_loss() -> None:
    student, teacher = (
        torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]),
        torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]]),
    )
    y = torch.tensor([0, 1])
    settings = StudentSettings(steps=1, temperature=2.0, alpha=0.75, label_smoothing=0.0)
    expected = distillation_loss(student, teacher, y, 2.0, 0.75)
    assert torch.allclose(labeled_loss(student, y, teacher, settings, None), expected)
    # by hand: (1 - a) CE + a T^2 KL(p_t || p_s), KL summed over classes and averaged over the batch
    p_t, log_p_s = torch.softmax(teacher / 2, dim=1), torch.log_softmax(student / 2, dim=1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(dim=1).mean()
    assert math.isclose(float(expected), 0.25 * float(F.cross_entropy(student, y)) + 0.75 * 4 * float(kl), rel_tol=1e-5)
    assert torch.allclose(labeled_loss(student, y, None, settings, None), F.cross_entropy(student, y))


def test_pseudo_loss_soft_is_the_soft_ce_on_plain_logits_and_hard_is_smoothed_ce() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    probs = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
    settings = StudentSettings(steps=1, temperature=2.0, pseudo_label_smoothing=0.1)
    soft_ce = -(probs * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()  # T is in probs already
    assert math.isclose(float(pseudo_loss(logits, probs, settings)), float(soft_ce), rel_tol=1e-5)
    hard = torch.tensor([0, 1])
    assert torch.allclose(pseudo_loss(logits, hard, settings), F.cross_entropy(logits, hard, label_smoothing=0.1))


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 4
    images = (torch.rand(n, 1, 8, 8, generator=gen) * 60).to(torch.uint8)
    for c in range(4):
        images[labels == c, :, 2 * c : 2 * c + 2, :] = 250
    return images, labels


def _train(settings: StudentSettings, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    images, labels = _data()
    model = create_model("small_cnn", 4, 1)
    return train_student(model, images, labels, 4, settings, None, "cpu", torch.Generator().manual_seed(1), **kwargs)


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_train_student_learns_a_separable_toy_task_and_reports() -> None:
    reports: list[tuple[int, dict]] = []
    model = _train(
        StudentSettings(steps=60, batch_size=16, lr=0.05, warmup_steps=5),
        report=lambda s, m: reports.append((s, m)),
        report_every=20,
    )
    images, labels = _data()
    with torch.no_grad():
        accuracy = (model((images.float() / 255 - 0.5) / 0.5).argmax(1) == labels).float().mean()
    assert not model.training and accuracy >= 0.9
    assert [step for step, _ in reports] == [20, 40, 60] and set(reports[-1][1]) == {"loss", "loss_x", "lr"}, (
        "no pseudo-labels: no loss_u, which could only be 0"
    )


@pytest.mark.parametrize(
    ("knob", "kwargs"),
    [
        ({"cutmix_alpha": 1.0}, {}),
        ({"label_smoothing": 0.2}, {}),
        ({"unlabel_ratio": 3.0}, {"pseudo": True}),
        ({"temperature": 4.0}, {"teacher": True}),
        ({"alpha": 0.1}, {"teacher": True}),
    ],
)
def test_every_knob_changes_the_trained_weights(knob: dict, kwargs: dict) -> None:
    images, _labels = _data()
    extra: dict = {}
    if kwargs.get("pseudo"):
        extra = {
            "pseudo_images": images[:32],
            "pseudo_targets": torch.softmax(torch.randn(32, 4, generator=torch.Generator().manual_seed(2)), 1),
        }
    if kwargs.get("teacher"):
        torch.manual_seed(5)
        extra = {"teacher": create_model("small_cnn", 4, 1).eval()}
    base = StudentSettings(steps=5, batch_size=8, lr=0.05, alpha=0.5)
    changed = StudentSettings(**{**base.__dict__, **knob})
    assert not torch.allclose(_weights(_train(base, **extra)), _weights(_train(changed, **extra)))


def test_class_weights_change_the_trained_weights() -> None:
    settings = StudentSettings(steps=5, batch_size=8, lr=0.05)
    weighted = _train(settings, class_weights=torch.tensor([4.0, 0.0, 0.0, 0.0]))
    assert not torch.allclose(_weights(_train(settings)), _weights(weighted))


def test_labeled_loss_follows_the_loss_setting() -> None:
    logits, y = torch.tensor([[2.0, -1.0], [0.0, 1.0]]), torch.tensor([0, 1])
    focal = StudentSettings(steps=1, loss="focal", focal_gamma=2.0, label_smoothing=0.0)
    sigmoid = StudentSettings(steps=1, loss="sigmoid", label_smoothing=0.0)  # hard targets, as the config gives them
    assert float(labeled_loss(logits, y, None, focal, None)) < float(labeled_loss(logits, y, None, sigmoid, None))
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(y, 2).float(), reduction="sum") / 2
    assert torch.allclose(labeled_loss(logits, y, None, sigmoid, None), expected)


def test_a_frozen_backbone_keeps_its_weights_while_the_head_trains() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", 2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randint(0, 255, (16, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(16) % 2
    settings = StudentSettings(steps=3, batch_size=8, lr=0.1, schedule="constant", freeze_backbone_steps=3)
    train_student(model, images, labels, 2, settings, None, "cpu", torch.Generator().manual_seed(0))
    after = model.state_dict()
    assert torch.equal(after["features.0.0.weight"], before["features.0.0.weight"])
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    thawed = StudentSettings(steps=3, batch_size=8, lr=0.1, schedule="constant", freeze_backbone_steps=2)
    train_student(model, images, labels, 2, thawed, None, "cpu", torch.Generator().manual_seed(0))
    assert not torch.equal(model.state_dict()["features.0.0.weight"], before["features.0.0.weight"])


def test_a_teacher_weighed_by_alpha_0_leaves_the_trained_weights_as_no_teacher_does() -> None:
    """Why the distillation builder wires no teacher with `distill.alpha` 0: its logits changed nothing."""
    settings = StudentSettings(steps=5, batch_size=8, lr=0.05, alpha=0.0, temperature=4.0)
    torch.manual_seed(5)
    teacher = create_model("small_cnn", 4, 1).eval()
    assert torch.equal(_weights(_train(settings, teacher=teacher)), _weights(_train(settings)))
