"""Pure schedule functions: learning rate per optimizer step, alignment temperature per generation.

Schedules are defined in optimizer steps with a fixed global batch, so they do not change with the
number of data-parallel workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

TEMPERATURE_SHAPES = ("linear", "cosine", "step")


def _check_step(name: str, step: int, total_steps: int) -> None:
    if total_steps <= 0:
        raise ValueError(f"{name}: expected total_steps > 0, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"{name}: expected 0 <= step <= total_steps ({total_steps}), got {step}")


def fixmatch_lr(step: int, total_steps: int, base_lr: float) -> float:
    """FixMatch's cosine decay ``lr_k = lr * cos(7 * pi * k / (16 * K))``: ends at ``lr*cos(7pi/16) ~ 0.2 lr``."""
    _check_step("fixmatch_lr", step, total_steps)
    return base_lr * math.cos(7.0 * math.pi * step / (16.0 * total_steps))


def cosine_lr(step: int, total_steps: int, base_lr: float) -> float:
    """Half-cosine decay ``lr_k = lr * (1 + cos(pi * k / K)) / 2``: from ``lr`` to 0."""
    _check_step("cosine_lr", step, total_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / total_steps))


def constant_lr(step: int, total_steps: int, base_lr: float) -> float:
    """``lr_k = lr`` (a baseline and for tests)."""
    _check_step("constant_lr", step, total_steps)
    return base_lr


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up then half-cosine decay (KE's schedule: cosine with 5 warm-up epochs).

    ``k < W``: ``lr * (k + 1) / W`` (the first step is not wasted at lr 0);
    ``k >= W``: ``lr * (1 + cos(pi * (k - W) / (K - W))) / 2``.
    """
    _check_step("warmup_cosine_lr", step, total_steps)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_cosine_lr: expected 0 <= warmup_steps < total_steps ({total_steps}), got {warmup_steps}"
        )
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * progress))


LR_SCHEDULES: dict[str, Callable[[int, int, int, float], float]] = {
    "constant": lambda step, total, warmup, lr: constant_lr(step, total, lr),
    "cosine": lambda step, total, warmup, lr: cosine_lr(step, total, lr),
    "fixmatch": lambda step, total, warmup, lr: fixmatch_lr(step, total, lr),
    "warmup_cosine": warmup_cosine_lr,
}


def learning_rate(schedule: str, step: int, total_steps: int, base_lr: float, warmup_steps: int = 0) -> float:
    """The LR at ``step`` for a schedule named in ``LR_SCHEDULES`` (``warmup_steps`` used by "warmup_cosine" only)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r}; expected one of {sorted(LR_SCHEDULES)}")
    return LR_SCHEDULES[schedule](step, total_steps, warmup_steps, base_lr)


def temperature(generation: int, generations: int, t_min: float, shape: str = "linear") -> float:
    """CReST+ alignment temperature for generation ``g`` of ``G`` (g = 0..G-1), from 1.0 down to ``t_min``.

    - "linear" (the paper): ``t_g = (1 - g/(G-1)) * 1.0 + (g/(G-1)) * t_min``;
      6 generations, t_min 0.5: 1.0, 0.9, 0.8, 0.7, 0.6, 0.5.
    - "cosine": ``t_g = t_min + (1 - t_min) * (1 + cos(pi * g/(G-1))) / 2`` (slow start, slow end).
    - "step": 1.0 while ``g < G/2``, then ``t_min``.
    A single generation uses 1.0 (no progression to make).
    """
    if shape not in TEMPERATURE_SHAPES:
        raise ValueError(f"unknown temperature shape {shape!r}; expected one of {TEMPERATURE_SHAPES}")
    if generations < 1 or not 0 <= generation < generations:
        raise ValueError(
            "temperature: expected generations >= 1 and 0 <= generation < generations, "
            f"got generation {generation} of {generations}"
        )
    if generations == 1:
        return 1.0
    progress = generation / (generations - 1)
    if shape == "linear":
        return (1.0 - progress) * 1.0 + progress * t_min
    if shape == "cosine":
        return t_min + (1.0 - t_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 if generation < generations / 2 else t_min
