"""The FixMatch loop (pipelines.training.fixmatch) on a tiny generated 2-class problem (CPU, a few seconds)."""

import copy

import pytest
import torch
from torch import nn

from pipelines.training.fixmatch import FixMatchSettings, class_distribution, train_fixmatch
from tests.unit.pipelines.training.toy import TinyCNN, toy_images


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
    labeled, labels = toy_images(8, generator)
    unlabeled, _ = toy_images(200, generator)
    test_images, test_labels = toy_images(200, generator)
    return labeled, labels, unlabeled, test_images, test_labels


def _settings(**overrides) -> FixMatchSettings:
    values = {"steps": 60, "batch_size": 16, "unlabeled_ratio": 2, "lr": 0.1, "threshold": 0.8, "ema_decay": 0.99}
    values.update(overrides)
    return FixMatchSettings(**values)


def _fixmatch(problem, settings, model=None, report=None, report_every=20, seed=1):
    labeled, labels, unlabeled, _, _ = problem
    torch.manual_seed(0)
    model = model if model is not None else TinyCNN()
    return train_fixmatch(
        model,
        labeled,
        labels,
        unlabeled,
        2,
        settings,
        _identity,
        _noise_fn(seed),
        "cpu",
        torch.Generator().manual_seed(seed),
        report=report,
        report_every=report_every,
    )


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
        ema = train_fixmatch(
            model,
            labeled,
            labels,
            unlabeled,
            2,
            settings,
            _identity,
            _global_rng_strong,
            "cpu",
            torch.Generator().manual_seed(1),
            report=lambda s, m: reports.append((s, m)),
            report_every=10,
            checkpoint_every=7,
            save_checkpoint=save,
            resume=resume,
        )
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


def _spy_on_alignment(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Records (batch mean of q, p_model, p_target) that each step's unlabeled loss is given."""
    from pipelines.training import fixmatch

    seen = []
    original = fixmatch.fixmatch_unlabeled_loss

    def spy(logits_strong, probs_weak, threshold, p_model=None, p_target=None):
        seen.append((probs_weak.mean(0).clone(), p_model.clone(), p_target.clone()))
        return original(logits_strong, probs_weak, threshold, p_model, p_target)

    monkeypatch.setattr(fixmatch, "fixmatch_unlabeled_loss", spy)
    return seen


def test_alignment_divides_by_the_debiased_model_distribution_from_step_one(problem, monkeypatch):
    """CReST+ in short generations: the first step divides by the model's own batch mean, not ~uniform."""
    seen = _spy_on_alignment(monkeypatch)
    _fixmatch(problem, _settings(steps=3, alignment=True))
    batch_mean, p_model, _ = seen[0]
    assert torch.allclose(p_model, batch_mean, atol=1e-6)
    seen.clear()
    _fixmatch(problem, _settings(steps=3, alignment=True, p_model_estimate="uniform_ema"))
    batch_mean, p_model, _ = seen[0]
    assert torch.allclose(p_model, 0.999 * torch.full((2,), 0.5) + 0.001 * batch_mean, atol=1e-6)


def test_the_alignment_target_is_made_from_p_labeled_when_given(problem, monkeypatch):
    from pipelines.losses import alignment_target

    labeled, labels, unlabeled, _, _ = problem
    seen = _spy_on_alignment(monkeypatch)
    settings = _settings(steps=1, alignment=True, temperature=0.5)
    run = (labeled, labels, unlabeled, 2, settings, _identity, _noise_fn(1), "cpu")
    train_fixmatch(TinyCNN(), *run, torch.Generator().manual_seed(1), p_labeled=torch.tensor([0.9, 0.1]))
    assert torch.allclose(seen[0][2], alignment_target(torch.tensor([0.9, 0.1]), 0.5))
    with pytest.raises(ValueError, match="p_labeled"):
        train_fixmatch(TinyCNN(), *run, torch.Generator().manual_seed(1), p_labeled=torch.ones(3) / 3)
