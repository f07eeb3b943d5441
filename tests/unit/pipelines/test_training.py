"""Training loops on a tiny generated 2-class problem (1x8x8 images, tiny CNN, CPU, a few seconds)."""

import copy

import pytest
import torch
from torch import nn

from pipelines.training import (
    FixMatchSettings,
    ModelEMA,
    class_distribution,
    parameter_groups,
    random_batches,
    train_fixmatch,
    train_supervised,
)


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: left half brighter by 40; class 1: right half; uniform noise 0..119 everywhere."""
    labels = torch.randint(0, 2, (n,), generator=generator)
    images = torch.randint(0, 120, (n, 1, 8, 8), generator=generator)
    images[labels == 0, :, :, :4] += 40
    images[labels == 1, :, :, 4:] += 40
    return images.to(torch.uint8), labels


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model((images.float() / 255 - 0.5) / 0.5).argmax(1) == labels).float().mean().item()


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def _noise_fn(seed: int):
    generator = torch.Generator().manual_seed(seed)

    def strong(images: torch.Tensor) -> torch.Tensor:
        noise = torch.randint(-40, 41, images.shape, generator=generator)
        return (images.int() + noise).clamp(0, 255).to(torch.uint8)

    return strong


@pytest.fixture(scope="module")
def problem():
    generator = torch.Generator().manual_seed(0)
    labeled, labels = _images(8, generator)
    unlabeled, _ = _images(200, generator)
    test_images, test_labels = _images(200, generator)
    return labeled, labels, unlabeled, test_images, test_labels


def _settings(**overrides) -> FixMatchSettings:
    values = dict(steps=60, batch_size=16, unlabeled_ratio=2, lr=0.1, threshold=0.8, ema_decay=0.99)
    values.update(overrides)
    return FixMatchSettings(**values)


def _fixmatch(problem, settings, model=None, report=None, report_every=20, seed=1):
    labeled, labels, unlabeled, _, _ = problem
    torch.manual_seed(0)
    model = model if model is not None else TinyCNN()
    return train_fixmatch(
        model, labeled, labels, unlabeled, 2, settings, _identity, _noise_fn(seed), "cpu",
        torch.Generator().manual_seed(seed), report=report, report_every=report_every,
    )


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
    decay_ids = {id(p) for p in groups[0]["params"]}
    no_decay_ids = {id(p) for p in groups[1]["params"]}
    conv, bn = model.features[0], model.features[1]
    assert decay_ids == {id(conv.weight), id(model.head.weight)}
    assert no_decay_ids == {id(conv.bias), id(bn.weight), id(bn.bias), id(model.head.bias)}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0


def test_fixmatch_settings_validate_on_construction():
    with pytest.raises(ValueError, match=r"2 invalid value\(s\): steps=0, threshold=1.5"):
        FixMatchSettings(steps=0, threshold=1.5)


def test_random_batches_cover_every_item_once_per_epoch():
    stream = random_batches(10, 4, torch.Generator().manual_seed(0))
    first_epoch = torch.cat([next(stream), next(stream)])[:8].tolist() + next(stream)[:2].tolist()
    assert sorted(first_epoch) == list(range(10))


def test_class_distribution_hard_and_soft():
    assert class_distribution(torch.tensor([0, 0, 2, 2, 2, 2]), 3).tolist() == pytest.approx([1 / 3, 0, 2 / 3])
    assert class_distribution(torch.tensor([[0.5, 0.5], [0.0, 1.0]]), 2).tolist() == pytest.approx([0.25, 0.75])


def test_train_fixmatch_learns_and_returns_eval_mode_ema(problem):
    _, _, _, test_images, test_labels = problem
    torch.manual_seed(0)
    assert _accuracy(TinyCNN().eval(), test_images, test_labels) < 0.65  # chance before training
    reports = []
    model = TinyCNN()
    ema_model = _fixmatch(problem, _settings(), model=model, report=lambda step, m: reports.append((step, m)))
    assert ema_model is not model and not ema_model.training
    assert _accuracy(ema_model, test_images, test_labels) >= 0.85
    assert [step for step, _ in reports] == [20, 40, 60]
    assert set(reports[-1][1]) == {"loss", "loss_x", "loss_u", "mask_rate", "lr", "samples_seen"}
    assert reports[-1][1]["samples_seen"] == 60 * (16 + 16 * 2)  # labeled + unlabeled images, global batch
    assert 0.0 < reports[-1][1]["mask_rate"] <= 1.0
    assert reports[-1][1]["lr"] == pytest.approx(0.1 * 0.21750, abs=1e-5)  # lr at step 59: cos(7 pi 59 / (16 * 60))


def test_train_fixmatch_one_forward_of_fixed_global_batch(problem):
    sizes = []

    class Counting(TinyCNN):
        def forward(self, x):
            sizes.append(x.shape[0])
            return super().forward(x)

    reports = []
    _fixmatch(problem, _settings(steps=5), model=Counting(), report=lambda s, m: reports.append(s), report_every=2)
    assert sizes == [16 + 2 * 2 * 16] * 5  # B + weak(mu B) + strong(mu B), one forward per step
    assert reports == [2, 4, 5]  # every report_every steps and the last step


def test_train_fixmatch_is_reproducible_with_the_same_generator(problem):
    first = _fixmatch(problem, _settings(steps=10))
    second = _fixmatch(problem, _settings(steps=10))
    third = _fixmatch(problem, _settings(steps=10), seed=2)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not torch.equal(first.head.weight, third.head.weight)


def test_train_fixmatch_with_alignment_reports_mask_rate_and_temperature_acts(problem):
    reports = []
    _fixmatch(problem, _settings(steps=20, alignment=True, temperature=0.5), report=lambda s, m: reports.append(m))
    assert 0.0 <= reports[-1]["mask_rate"] <= 1.0
    flat = _fixmatch(problem, _settings(steps=10, alignment=True, temperature=0.0))
    sharp = _fixmatch(problem, _settings(steps=10, alignment=True, temperature=1.0))
    assert not torch.equal(flat.head.weight, sharp.head.weight)


def test_train_fixmatch_nan_names_the_step(problem):
    class NanAtThirdCall(TinyCNN):
        calls = 0

        def forward(self, x):
            self.calls += 1
            out = super().forward(x)
            return out * float("nan") if self.calls == 3 else out

    with pytest.raises(FloatingPointError, match="at step 3 of 60.*[Ll]ower the learning rate"):
        _fixmatch(problem, _settings(), model=NanAtThirdCall())


def test_train_fixmatch_diverging_lr_raises(problem):
    with pytest.raises(FloatingPointError, match=r"at step \d+ of 60"):
        _fixmatch(problem, _settings(lr=1e6))


def _supervised(problem, steps=60, **kwargs):
    labeled, labels, _, _, _ = problem
    torch.manual_seed(0)
    defaults = dict(
        num_classes=2, steps=steps, batch_size=16, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
        schedule="cosine", device="cpu", generator=torch.Generator().manual_seed(3), augment_fn=_noise_fn(4),
    )
    defaults.update(kwargs)
    images, targets = defaults.pop("images", labeled), defaults.pop("targets", labels)
    return train_supervised(TinyCNN(), images, targets, **defaults)


def test_train_supervised_learns_with_smoothing_weights_and_ema(problem):
    _, _, unlabeled, test_images, test_labels = problem
    generator = torch.Generator().manual_seed(5)
    images, labels = _images(64, generator)
    reports = []
    model = _supervised(
        problem, images=images, targets=labels, label_smoothing=0.1, class_weights=torch.tensor([1.0, 2.0]),
        ema_decay=0.9, report=lambda s, m: reports.append((s, m)), schedule="warmup_cosine", warmup_steps=5,
    )
    assert not model.training
    assert _accuracy(model, test_images, test_labels) >= 0.85
    assert reports[-1][0] == 60 and set(reports[-1][1]) == {"loss", "lr", "accuracy"}


def test_train_supervised_soft_one_hot_targets_equal_hard_targets(problem):
    _, labels, _, _, _ = problem
    hard = _supervised(problem, steps=8)
    soft = _supervised(problem, steps=8, soft_targets=nn.functional.one_hot(labels, 2).float())
    assert torch.allclose(hard.head.weight, soft.head.weight, atol=1e-5)
    weighted = _supervised(problem, steps=8, class_weights=torch.tensor([1.0, 5.0]))
    assert not torch.allclose(hard.head.weight, weighted.head.weight, atol=1e-4)  # the knob acts


def test_train_supervised_rejects_unknown_schedule_and_bad_targets(problem):
    with pytest.raises(ValueError, match="expected one of"):
        _supervised(problem, steps=2, schedule="linear")
    with pytest.raises(ValueError, match="class ids"):
        _supervised(problem, steps=2, targets=torch.full((8,), 7))


def _global_rng_strong(images: torch.Tensor) -> torch.Tensor:
    """A strong augmentation drawing from torch's global RNG, like the real ones (checkpointed with the loop)."""
    noise = torch.randint(-40, 41, images.shape)
    return (images.int() + noise).clamp(0, 255).to(torch.uint8)


def _resumable_run(problem, settings, resume=None, stop_at=None):
    """train_fixmatch with checkpoints every 7 steps; ``stop_at`` simulates a crash right after that checkpoint."""
    labeled, labels, unlabeled, _, _ = problem
    saved, reports = [], []

    class Crash(Exception):
        pass

    def save(state, step):
        saved.append(copy.deepcopy(state))
        if step == stop_at:
            raise Crash

    torch.manual_seed(0)
    model = TinyCNN()
    try:
        ema = train_fixmatch(model, labeled, labels, unlabeled, 2, settings, _identity, _global_rng_strong, "cpu",
                             torch.Generator().manual_seed(1), report=lambda s, m: reports.append((s, m)),
                             report_every=10, checkpoint_every=7, save_checkpoint=save, resume=resume)
    except Crash:
        return None, saved, reports
    return ema, saved, reports


def test_train_fixmatch_resumes_from_a_checkpoint_exactly(problem):
    settings = _settings(steps=30, alignment=True)
    whole, saved_whole, reports_whole = _resumable_run(problem, settings)
    assert [state["step"] for state in saved_whole] == [7, 14, 21, 28]
    _, saved, _ = _resumable_run(problem, settings, stop_at=14)
    resumed, _, reports = _resumable_run(problem, settings, resume=saved[-1])
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert reports == [r for r in reports_whole if r[0] > 14]  # same losses, same samples_seen, no step before 15


def test_rank_slice_splits_the_global_batch_and_refuses_uneven_splits():
    from pipelines.training import rank_slice

    assert [rank_slice(8, r, 2) for r in (0, 1)] == [slice(0, 4), slice(4, 8)]
    with pytest.raises(ValueError, match="multiples of 3"):
        rank_slice(8, 0, 3)
