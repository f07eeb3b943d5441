"""LR and temperature schedules against their closed forms."""

import math

import pytest

from pipelines.schedules import (
    LR_SCHEDULES,
    TEMPERATURE_SHAPES,
    cosine_lr,
    fixmatch_lr,
    learning_rate,
    temperature,
    warmup_cosine_lr,
)


def test_fixmatch_lr_start_middle_end():
    assert fixmatch_lr(0, 1000, 0.03) == pytest.approx(0.03, abs=1e-12)
    assert fixmatch_lr(500, 1000, 0.03) == pytest.approx(0.0231903136, abs=1e-9)  # 0.03 cos(7 pi / 32)
    assert fixmatch_lr(1000, 1000, 0.03) == pytest.approx(0.0058527097, abs=1e-9)  # 0.03 cos(7 pi / 16)


def test_fixmatch_lr_rejects_step_beyond_total():
    with pytest.raises(ValueError, match="step"):
        fixmatch_lr(11, 10, 0.03)


def test_cosine_and_warmup_cosine_shapes():
    assert cosine_lr(0, 100, 0.1) == pytest.approx(0.1)
    assert cosine_lr(50, 100, 0.1) == pytest.approx(0.05)
    assert cosine_lr(100, 100, 0.1) == pytest.approx(0.0, abs=1e-12)
    values = [warmup_cosine_lr(k, 100, 10, 0.1) for k in range(101)]
    assert values[0] == pytest.approx(0.01)  # (0 + 1) / 10 of the base lr
    assert values[9] == pytest.approx(0.1) and values[10] == pytest.approx(0.1)
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(values[:10], values[1:10]))
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_learning_rate_dispatch_and_unknown_name():
    assert learning_rate("fixmatch", 500, 1000, 0.03) == fixmatch_lr(500, 1000, 0.03)
    assert learning_rate("constant", 7, 10, 0.2) == 0.2
    assert learning_rate("warmup_cosine", 0, 100, 0.1, warmup_steps=10) == pytest.approx(0.01)
    assert set(LR_SCHEDULES) == {"constant", "cosine", "fixmatch", "warmup_cosine"}
    with pytest.raises(ValueError, match="expected one of"):
        learning_rate("linear", 0, 10, 0.1)


def test_linear_temperature_six_generations():
    values = [temperature(g, 6, 0.5, "linear") for g in range(6)]
    assert values == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], abs=1e-12)


def test_cosine_temperature_monotone_with_endpoints():
    values = [temperature(g, 6, 0.5, "cosine") for g in range(6)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[1] == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 5)))
    assert values != pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], abs=1e-3)  # a different shape


def test_step_temperature_first_half_then_t_min():
    assert [temperature(g, 6, 0.3, "step") for g in range(6)] == [1.0, 1.0, 1.0, 0.3, 0.3, 0.3]
    assert [temperature(g, 5, 0.3, "step") for g in range(5)] == [1.0, 1.0, 1.0, 0.3, 0.3]


def test_single_generation_and_bad_arguments():
    assert all(temperature(0, 1, 0.5, shape) == 1.0 for shape in TEMPERATURE_SHAPES)
    with pytest.raises(ValueError, match="expected one of"):
        temperature(0, 6, 0.5, "exponential")
    with pytest.raises(ValueError, match="generation"):
        temperature(6, 6, 0.5)
