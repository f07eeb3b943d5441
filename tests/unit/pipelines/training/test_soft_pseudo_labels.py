"""Noisy Student's soft pseudo-labels: `noisy.temperature` softens what the student learns.

The table stores the teacher's p = softmax(z_t / T); the student fits p with its plain logits (the
official Noisy Student code's soft cross-entropy). Tempering the student's side too would make its
optimum softmax(z_t) whatever T, and the temperature would change nothing.
"""

from __future__ import annotations

import pytest
import torch

from pipelines.losses import distillation_loss
from pipelines.training.student import StudentSettings, pseudo_loss

TEACHER_LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0]])


def _stored_target(temperature: float) -> torch.Tensor:
    """What the pseudo-label table holds for TEACHER_LOGITS: the tempered teacher distribution."""
    return torch.softmax(TEACHER_LOGITS / temperature, dim=1)


def _fit_linear_student(target: torch.Tensor, temperature: float, steps: int = 400) -> torch.Tensor:
    """A linear student trained with Relay's pseudo-label loss on one fixed input; its softmax after training."""
    torch.manual_seed(0)
    student = torch.nn.Linear(3, target.shape[1])
    inputs = torch.tensor([[1.0, -0.5, 0.25]])
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    settings = StudentSettings(steps=steps, temperature=temperature)
    for _ in range(steps):
        optimizer.zero_grad()
        pseudo_loss(student(inputs), target, settings).backward()
        optimizer.step()
    with torch.no_grad():
        return torch.softmax(student(inputs), dim=1)


@pytest.mark.parametrize("temperature", [2.0, 4.0])
def test_the_student_learns_the_stored_tempered_target(temperature: float) -> None:
    """At T 2: the student converges to p = [0.455 0.276 0.167 0.102], not softmax(z_t) = [0.644 0.237 0.087 0.032]."""
    target = _stored_target(temperature)
    learned = _fit_linear_student(target, temperature)
    assert torch.allclose(learned, target, atol=1e-3), f"learned {learned}, stored {target}"
    untempered = torch.softmax(TEACHER_LOGITS, dim=1)
    assert (learned - untempered).abs().max() > 0.1, "the temperature changed nothing the student learns"


def test_the_soft_loss_gradient_is_the_student_softmax_minus_the_target() -> None:
    """d/dz_s of -sum p log softmax(z_s), batch mean: (softmax(z_s) - p) / B, with the plain student logits."""
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -2.0, 0.5]], requires_grad=True)
    target = torch.softmax(torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 1.0]]) / 2.0, dim=1)
    pseudo_loss(logits, target, StudentSettings(steps=1, temperature=2.0)).backward()
    expected = (torch.softmax(logits.detach(), dim=1) - target) / len(target)
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_at_temperature_one_the_gradient_is_the_tempered_kls() -> None:
    """At T 1 the soft CE and the former T^2 KL(p || softmax(z_s / T)) differ by the target's entropy only,
    so a config at `noisy.temperature: 1` (the bundled ones) trains exactly as before."""
    target = _stored_target(1.0).repeat(2, 1)
    soft_ce_logits = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -2.0, 0.5]], requires_grad=True)
    kl_logits = soft_ce_logits.detach().clone().requires_grad_(True)
    pseudo_loss(soft_ce_logits, target, StudentSettings(steps=1, temperature=1.0)).backward()
    distillation_loss(kl_logits, target.log(), None, 1.0, 1.0).backward()
    assert torch.allclose(soft_ce_logits.grad, kl_logits.grad, atol=1e-6)
