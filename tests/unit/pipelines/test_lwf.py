"""Learning without Forgetting: the loss by hand, the two-headed network, and what each training mode changes."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.lwf import TwoHeads, lwf_loss
from pipelines.models import create_model
from pipelines.training.lwf import LwfSettings, train_lwf
from tests.unit.pipelines.training.toy import toy_images


def test_lwf_loss_is_new_ce_plus_lambda_kl_on_the_old_head_without_t_squared() -> None:
    new_logits, new_targets = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    old_logits, recorded = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    # CE = log(1 + e^-1) = 0.3132617
    # T = 2: p = softmax((1, 0)) = (0.7310586, 0.2689414), q = (0.5, 0.5);
    # KL(p || q) = 0.7310586 log 1.4621172 + 0.2689414 log 0.5378828 = 0.1109441 (Hinton's loss: T^2 KL = 0.4437764)
    ce = math.log(1 + math.exp(-1))
    kl = 0.7310586 * math.log(1.4621172) + 0.2689414 * math.log(0.5378828)
    assert kl == pytest.approx(0.1109441, abs=1e-6)
    total, got_ce, got_kd = lwf_loss(new_logits, new_targets, old_logits, recorded, lambda_old=0.5, temperature=2.0)
    assert float(got_ce) == pytest.approx(ce, abs=1e-6)
    assert float(got_kd) == pytest.approx(0.1109441, abs=1e-6)
    assert float(total) == pytest.approx(ce + 0.5 * 0.1109441, abs=1e-6)


def test_lwf_old_task_gradient_is_the_papers_softened_cross_entropy() -> None:
    """Li & Hoiem's term is -sum p log softmax(z_o / T): same gradient as the KL, with no T^2 on top (was 4x)."""
    torch.manual_seed(0)
    recorded = torch.randn(8, 5)
    old = torch.randn(8, 5, requires_grad=True)
    _, _, kd = lwf_loss(torch.zeros(8, 3), torch.zeros(8, dtype=torch.long), old, recorded, 1.0, 2.0)
    (relay_grad,) = torch.autograd.grad(kd, old)
    paper_old = old.detach().clone().requires_grad_(True)
    target = torch.softmax(recorded / 2.0, dim=1)
    paper = -(target * torch.log_softmax(paper_old / 2.0, dim=1)).sum(dim=1).mean()
    (paper_grad,) = torch.autograd.grad(paper, paper_old)
    assert torch.allclose(relay_grad, paper_grad, atol=1e-6)


def test_lwf_loss_refuses_mismatched_old_outputs() -> None:
    with pytest.raises(ValueError, match="one shape"):
        lwf_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 2), torch.zeros(2, 4), 1.0, 2.0)


def test_two_heads_keep_the_old_outputs_and_merge_into_one_classifier() -> None:
    torch.manual_seed(0)
    old = create_model("small_cnn", 3, 1).eval()
    network = TwoHeads(old, new_classes=2).eval()
    x = torch.rand(4, 1, 16, 16)
    both = network(x)
    assert both.shape == (4, 5) and torch.allclose(both[:, :3], old(x), atol=1e-6)
    merged = network.merged()
    assert merged.fc.out_features == 5 and torch.allclose(merged(x), both, atol=1e-6)
    assert set(merged.state_dict()) == set(old.state_dict()), "a plain registered model again"


def _tiny_task(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = toy_images(64, torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(images.float(), size=16).to(torch.uint8), labels


def _train(mode: str, **extra: object) -> tuple[torch.nn.Module, TwoHeads]:
    torch.manual_seed(0)
    old = create_model("small_cnn", 2, 1).eval()
    network = TwoHeads(old, new_classes=2)
    images, labels = _tiny_task(1)
    settings = LwfSettings(steps=5, mode=mode, batch_size=16, lr=0.1, schedule="constant", **extra)
    recorded = old(images.float() / 255.0).detach() if mode == "lwf" else None
    old_images, old_labels = _tiny_task(2) if mode == "joint" else (None, None)
    trained = train_lwf(
        network,
        images,
        labels,
        settings,
        None,
        "cpu",
        torch.Generator().manual_seed(0),
        recorded,
        old_images,
        old_labels,
    )
    return old, trained


def test_finetuning_freezes_the_old_head_and_lwf_trains_it() -> None:
    old, finetuned = _train("finetune")
    assert torch.equal(finetuned.old_head.weight, old.fc.weight), "fine-tuning keeps the old head as it was"
    old, lwf = _train("lwf")
    assert not torch.equal(lwf.old_head.weight, old.fc.weight), "LwF trains the old head on the recorded outputs"


def test_the_warm_up_trains_only_the_new_head() -> None:
    old, warm = _train("lwf", freeze_backbone_steps=5)
    body_before = old.state_dict()["features.0.0.weight"]
    assert torch.equal(warm.body.state_dict()["features.0.0.weight"], body_before)
    assert torch.equal(warm.old_head.weight, old.fc.weight)


def test_lwf_needs_recorded_outputs_and_joint_needs_old_data() -> None:
    network = TwoHeads(create_model("small_cnn", 2, 1), 2)
    images, labels = _tiny_task(1)
    with pytest.raises(ValueError, match="old network's outputs"):
        train_lwf(network, images, labels, LwfSettings(steps=1), None, "cpu", torch.Generator())
    with pytest.raises(ValueError, match="old task's images"):
        train_lwf(network, images, labels, LwfSettings(steps=1, mode="joint"), None, "cpu", torch.Generator())
