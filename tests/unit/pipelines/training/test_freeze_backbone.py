"""A frozen backbone (init.freeze_backbone_steps) trains exactly as if its parameters had requires_grad=False.

SGD with momentum and weight decay still folds a zero-rate parameter's gradient into its momentum
buffer, so merely zeroing the backbone's learning rate moved it by every frozen step's gradient
at the first unfrozen step. These tests drive Relay's own optimizer (``sgd``) and schedule
(``set_lr``, ``backbone_scale``) on a real model and compare with a run whose backbone really has
``requires_grad=False`` while frozen.
"""

import copy

import torch
from torch import nn

from pipelines.models import small_cnn
from pipelines.training.common import backbone_scale, set_lr, sgd

FREEZE_STEPS = 5
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4


def backbone_params(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if not name.startswith("fc.")]


def batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 1, 16, 16, generator=generator), torch.randint(0, 5, (16,), generator=generator))
        for _ in range(count)
    ]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = batch
    loss = nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def relay_run(model: nn.Module, steps: list) -> tuple[torch.optim.Optimizer, list[list[torch.Tensor]]]:
    """Relay's freezing: set_lr with backbone_scale each step; the weights after every step."""
    optimizer = sgd(model, LR, MOMENTUM, True, WEIGHT_DECAY)
    history = []
    for step, batch in enumerate(steps):
        set_lr(optimizer, LR, backbone_scale(step, FREEZE_STEPS, 1.0))
        train_step(model, optimizer, batch)
        history.append([p.detach().clone() for p in model.parameters()])
    return optimizer, history


def reference_run(model: nn.Module, steps: list) -> list[list[torch.Tensor]]:
    """The same steps with the backbone's requires_grad=False while frozen: its optimizer never sees those grads."""
    optimizer = sgd(model, LR, MOMENTUM, True, WEIGHT_DECAY)
    history = []
    for step, batch in enumerate(steps):
        for p in backbone_params(model):
            p.requires_grad_(step >= FREEZE_STEPS)
        train_step(model, optimizer, batch)
        history.append([p.detach().clone() for p in model.parameters()])
    return history


def test_a_frozen_backbone_keeps_its_weights_and_its_optimizer_state_untouched():
    torch.manual_seed(0)
    model = small_cnn(5, 1)
    start = [p.detach().clone() for p in backbone_params(model)]
    optimizer, _ = relay_run(model, batches(FREEZE_STEPS))
    for before, after in zip(start, backbone_params(model)):
        assert torch.equal(before, after)
    assert all(not optimizer.state[p] for p in backbone_params(model)), "no momentum buffer while frozen"
    assert all(optimizer.state[p] for p in model.fc.parameters()), "the head trains meanwhile"


def test_the_first_unfrozen_step_moves_the_backbone_as_a_fresh_momentum_buffer_would():
    torch.manual_seed(0)
    model = small_cnn(5, 1)
    reference = copy.deepcopy(model)
    steps = batches(FREEZE_STEPS + 3)
    _, relay_history = relay_run(model, steps)
    reference_history = reference_run(reference, steps)
    for step, (relay_weights, reference_weights) in enumerate(zip(relay_history, reference_history)):
        for got, expected in zip(relay_weights, reference_weights):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-7, msg=f"weights differ after step {step}")
