"""CReST rates/selection and Noisy Student filtering against hand-worked examples."""

import numpy as np
import pytest

from pipelines.sampling import crest_rates, filter_and_balance, select_crest

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
PAPER_RATES = [0.215, 0.256, 0.303, 0.359, 0.426, 0.505, 0.599, 0.711, 0.843, 1.0]


def test_crest_rates_from_exact_ratios_match_the_paper():
    counts = 5000 * 100.0 ** (-np.arange(10) / 9)  # N_k / N_1 = gamma^(-k/(L-1)) exactly
    np.testing.assert_allclose(crest_rates(counts, alpha=3.0), PAPER_RATES, atol=1e-3)


def test_crest_rates_from_integer_counts():
    rates = crest_rates(CIFAR10_LT_100, alpha=3.0)
    assert rates[1] == pytest.approx(0.255, abs=1e-3)  # (83 / 5000) ** (1/3) = 0.2551
    assert rates[0] == pytest.approx((50 / 5000) ** (1 / 3), abs=1e-12)
    assert rates[-1] == 1.0


def test_crest_alpha_is_the_inverse_exponent():
    # alpha = 1 -> exponent 1: the head rate is the plain tail/head ratio
    assert crest_rates([100, 10, 1], alpha=1.0).tolist() == pytest.approx([0.01, 0.1, 1.0])
    assert crest_rates([100, 10, 1], alpha=2.0).tolist() == pytest.approx([0.1, 0.1**0.5, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        crest_rates([100, 10, 1], alpha=0.0)


def test_crest_rates_rank_by_count_not_class_id():
    # class 0 is the RAREST here: it must get rate 1, the head (class 2) the smallest rate
    rates = crest_rates([1, 10, 100], alpha=1.0)
    assert rates.tolist() == pytest.approx([1.0, 0.1, 0.01])


def _predictions(rng: np.random.Generator, num_classes: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    pred = rng.integers(0, num_classes, size=size)
    confidence = rng.random(size).astype(np.float32)
    return pred, confidence


def test_shuffled_class_ids_pick_the_same_samples():
    rng = np.random.default_rng(0)
    pred, confidence = _predictions(rng, 10, 3000)
    perm = rng.permutation(10)  # class c is renamed perm[c]
    shuffled_counts = np.empty(10, dtype=np.int64)
    shuffled_counts[perm] = CIFAR10_LT_100
    rates = crest_rates(CIFAR10_LT_100)
    shuffled_rates = crest_rates(shuffled_counts)
    np.testing.assert_allclose(shuffled_rates[perm], rates, atol=1e-12)
    for mode in ("top", "bernoulli"):
        picks = select_crest(pred, confidence, rates, mode, np.random.default_rng(1))
        shuffled_picks = select_crest(perm[pred], confidence, shuffled_rates, mode, np.random.default_rng(1))
        np.testing.assert_array_equal(picks, shuffled_picks)
        assert 0 < len(picks) < len(pred)


def test_select_top_keeps_floor_rate_times_count_most_confident():
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    confidence = np.array([0.5, 0.9, 0.1, 0.8, 0.7, 0.3, 0.4, 0.2, 0.6, 0.95, 0.1], dtype=np.float32)
    rates = np.array([0.5, 1.0, 0.25])
    picks = select_crest(pred, confidence, rates, "top", np.random.default_rng(0))
    # class 0: floor(2.5) = 2 -> rows 1 (0.9), 3 (0.8); class 1: both rows; class 2: floor(1.0) = 1 -> row 9 (0.95)
    assert picks.tolist() == [1, 3, 5, 6, 9]
    assert picks.dtype == np.int64


def test_select_top_breaks_ties_by_row_and_tolerates_float_round_off():
    pred = np.zeros(100, dtype=np.int64)
    confidence = np.ones(100, dtype=np.float32)
    picks = select_crest(pred, confidence, np.array([0.29]), "top", np.random.default_rng(0))
    assert picks.tolist() == list(range(29))  # 0.29 * 100 is 28.999999999999996 in floats


def test_select_bernoulli_keeps_about_rate_fraction():
    rng = np.random.default_rng(0)
    pred = np.repeat([0, 1], 10_000)
    confidence = rng.random(20_000)
    picks = select_crest(pred, confidence, np.array([0.2, 0.7]), "bernoulli", np.random.default_rng(123))
    kept = np.bincount(pred[picks], minlength=2) / 10_000
    assert kept == pytest.approx([0.2, 0.7], abs=0.02)  # ~5 standard deviations
    other = select_crest(pred, confidence, np.array([0.2, 0.7]), "bernoulli", np.random.default_rng(124))
    assert not np.array_equal(picks, other)  # the rng acts


def test_select_crest_validates_inputs():
    with pytest.raises(ValueError, match="mode"):
        select_crest(np.array([0]), np.array([0.5]), np.array([1.0]), "random", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        select_crest(np.array([1]), np.array([0.5]), np.array([1.0]), "top", np.random.default_rng(0))


def test_filter_and_balance_counts():
    pred = np.array([0, 0, 0, 0, 0, 1, 2, 2, 3])
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.5, 0.4, 0.35, 0.1])
    rows = filter_and_balance(
        pred, confidence, num_classes=5, min_confidence=0.3, per_class=3, rng=np.random.default_rng(0)
    )
    assert np.bincount(pred[rows], minlength=5).tolist() == [3, 3, 3, 0, 0]  # class 3 filtered, class 4 empty
    assert sorted(rows[pred[rows] == 0].tolist()) == [0, 1, 2]  # top 3 by confidence
    assert rows[pred[rows] == 1].tolist() == [5, 5, 5]  # one sample duplicated to K
    class2 = rows[pred[rows] == 2].tolist()
    assert set(class2) == {6, 7} and len(class2) == 3  # both kept, one drawn again
    assert 4 not in rows and 8 not in rows  # below min_confidence


def test_filter_and_balance_duplicates_evenly_before_sampling():
    pred = np.zeros(3, dtype=np.int64)
    confidence = np.array([0.9, 0.8, 0.7])
    rows = filter_and_balance(pred, confidence, 1, 0.3, per_class=8, rng=np.random.default_rng(0))
    assert len(rows) == 8
    assert sorted(np.bincount(rows, minlength=3).tolist()) == [2, 3, 3]  # 8 = 2 * 3 + 2 extra distinct rows
