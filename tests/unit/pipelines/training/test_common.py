"""What both training loops share (pipelines.training.common): EMA, SGD groups, index streams, checks, rank slices."""

import pytest
import torch
from torch import nn

from pipelines.training.common import (
    FiniteWatch,
    LossWindow,
    ModelEMA,
    backbone_scale,
    check_targets,
    parameter_groups,
    random_batches,
    rank_slice,
    set_lr,
    sgd,
)
from tests.unit.pipelines.training.toy import TinyCNN


def test_model_ema_copies_buffers_and_averages_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, decay=0.9, warmup=False)
    before = [p.detach().clone() for p in ema.module.parameters()]
    model.train()(torch.randn(16, 3) * 5 + 2)  # moves the BN running stats
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    bn, ema_bn = model[1], ema.module[1]
    assert torch.equal(ema_bn.running_mean, bn.running_mean) and torch.equal(ema_bn.running_var, bn.running_var)
    assert ema_bn.num_batches_tracked.item() == 1
    for old, new, live in zip(before, ema.module.parameters(), model.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * live, atol=1e-6)
    assert not ema.module.training


def test_model_ema_warmup_decay_sequence():
    ema = ModelEMA(nn.Linear(2, 2), decay=0.999)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(nn.Linear(2, 2))
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.updates = 100_000
    assert ema.current_decay() == 0.999
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(nn.Linear(2, 2), decay=1.0)


def test_parameter_groups_exclude_batchnorm_and_biases_from_decay():
    model = TinyCNN()
    groups = parameter_groups(model, weight_decay=5e-4)
    decay_ids = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
    no_decay_ids = {id(p) for g in groups if not g["weight_decay"] for p in g["params"]}
    conv, bn = model.features[0], model.features[1]
    assert decay_ids == {id(conv.weight), id(model.head.weight)}
    assert no_decay_ids == {id(conv.bias), id(bn.weight), id(bn.bias), id(model.head.bias)}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0


def test_the_head_has_groups_of_its_own_and_set_lr_scales_only_the_backbone():
    model = TinyCNN()
    optimizer = sgd(model, 0.1, 0.9, False, 5e-4, head="head")
    heads = [g for g in optimizer.param_groups if not g["backbone"]]
    assert {id(p) for g in heads for p in g["params"]} == {id(model.head.weight), id(model.head.bias)}
    set_lr(optimizer, 0.2, backbone=backbone_scale(3, freeze_steps=5, lr_scale=0.5))
    assert {g["lr"] for g in optimizer.param_groups if g["backbone"]} == {0.0}, "frozen for the first 5 steps"
    set_lr(optimizer, 0.2, backbone=backbone_scale(5, freeze_steps=5, lr_scale=0.5))
    assert {g["lr"] for g in optimizer.param_groups if g["backbone"]} == {0.1}
    assert {g["lr"] for g in heads} == {0.2}


def test_random_batches_cover_every_item_once_per_epoch():
    stream = random_batches(10, 4, torch.Generator().manual_seed(0))
    first_epoch = torch.cat([next(stream), next(stream)])[:8].tolist() + next(stream)[:2].tolist()
    assert sorted(first_epoch) == list(range(10))


def test_check_targets_refuses_class_ids_out_of_range():
    with pytest.raises(ValueError, match="class ids"):
        check_targets("train_fixmatch", torch.full((8,), 7), 8, 2)


def test_rank_slice_splits_the_global_batch_and_refuses_uneven_splits():
    assert [rank_slice(8, r, 2) for r in (0, 1)] == [slice(0, 4), slice(4, 8)]
    with pytest.raises(ValueError, match="multiples of 3"):
        rank_slice(8, 0, 3)


def test_finite_watch_deferred_names_the_first_non_finite_step_and_its_lr():
    """The accelerator mode: nothing raises until ``check``, which names the FIRST bad step, not a later one."""
    watch = FiniteWatch("train_x", 10, "cpu", eager=False)
    for step, value in enumerate([1.0, 2.0, float("nan"), 3.0, float("inf")], start=1):
        watch.observe(torch.tensor(value), step, lr=0.1 * step)
    with pytest.raises(FloatingPointError, match=r"train_x: loss is nan at step 3 of 10 \(lr 0.3\).*[Ll]ower"):
        watch.check()


def test_finite_watch_deferred_passes_finite_windows_and_forgets_their_rates():
    watch = FiniteWatch("train_x", 10, "cpu", eager=False)
    for step in range(1, 4):
        watch.observe(torch.tensor(float(step)), step, lr=0.03)
    watch.check()
    assert watch.lrs == {}
    watch.observe(torch.tensor(float("-inf")), 4, lr=0.02)
    with pytest.raises(FloatingPointError, match=r"loss is -inf at step 4 of 10 \(lr 0.02\)"):
        watch.check()


def test_finite_watch_on_the_cpu_raises_at_the_step_itself():
    watch = FiniteWatch("train_x", 10, "cpu")
    watch.observe(torch.tensor(1.0), 1, lr=0.03)
    with pytest.raises(FloatingPointError, match="at step 2 of 10"):
        watch.observe(torch.tensor(float("nan")), 2, lr=0.03)


def test_loss_window_checks_its_watch_before_reporting_a_window():
    """A deferred NaN stops the loop when the window closes: ``report`` never receives a NaN mean."""
    reports = []
    watch = FiniteWatch("train_x", 4, "cpu", eager=False)
    window = LossWindow(("loss",), 4, lambda step, metrics: reports.append(metrics), 2, watch=watch)
    for step, value in enumerate([1.0, 1.0, float("nan"), 1.0]):
        watch.observe(torch.tensor(value), step + 1, lr=0.03)
        if step < 3:
            window.add(step, torch.tensor([value]), 0.03)
            continue
        with pytest.raises(FloatingPointError, match="at step 3 of 4"):
            window.add(step, torch.tensor([value]), 0.03)
    assert reports == [{"loss": 1.0, "lr": 0.03}]
