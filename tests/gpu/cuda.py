"""What the GPU tier shares: whether CUDA is there, the skip marks, and a small FixMatch run.

Every test in tests/gpu carries ``pytestmark = [pytest.mark.gpu, needs_cuda]``: on a machine
where torch sees no GPU each one is skipped with the reason, so `make test` stays green on
CPU machines; `make gpu-check` runs the tier where a GPU exists.
"""

from __future__ import annotations

import functools

import pytest
import torch

CUDA = torch.cuda.is_available()
GPUS = torch.cuda.device_count() if CUDA else 0

needs_cuda = pytest.mark.skipif(
    not CUDA, reason="needs CUDA: torch.cuda.is_available() is False here; run `make gpu-check` on a GPU machine"
)
needs_two_gpus = pytest.mark.skipif(GPUS < 2, reason=f"needs 2 GPUs; this machine has {GPUS}")


def fixmatch_run(
    device: str,
    steps: int,
    model_name: str = "small_cnn",
    seed: int = 0,
    report_every: int = 1,
    model: torch.nn.Module | None = None,
) -> tuple[torch.nn.Module, list]:
    """``steps`` FixMatch steps on the synthetic dataset (labeled: 20 a class) on ``device``; (EMA model, reports).

    ``model`` replaces the registered ``model_name`` (it must take the synthetic set's images).
    """
    from pipelines.augment import strong_augment, weak_augment
    from pipelines.data import load_dataset
    from pipelines.models import create_model
    from pipelines.training.fixmatch import FixMatchSettings, train_fixmatch

    data = load_dataset("synthetic", None).train
    labeled = torch.cat([torch.nonzero(data.labels == c).flatten()[:20] for c in range(data.num_classes)])
    torch.manual_seed(seed)
    model = create_model(model_name, data.num_classes, int(data.images.shape[1])) if model is None else model
    reports: list = []
    ema = train_fixmatch(
        model,
        data.images[labeled],
        data.labels[labeled],
        data.images,
        data.num_classes,
        FixMatchSettings(steps=steps, batch_size=16, unlabeled_ratio=2),
        functools.partial(weak_augment, flip=False),
        functools.partial(strong_augment, num_ops=2, magnitude=9),
        device,
        torch.Generator().manual_seed(seed),
        report=lambda step, metrics: reports.append((step, metrics)),
        report_every=report_every,
    )
    return ema, reports
