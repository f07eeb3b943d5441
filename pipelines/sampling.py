"""Which pseudo-labeled samples join the next generation: CReST rebalancing and Noisy Student filtering.

Classes are ranked by COUNT, never by class id (both official CReST codes assume class 0 is the
head, which breaks on any other ordering): ``classes_rarest_first`` is the one ranking Relay uses,
here and for the tail classes of evaluation. All randomness comes in as ``np.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SELECTION_MODES = ("top", "bernoulli")

# floor(rate * n) is computed as floor(rate * n + _FLOOR_SLACK) so that float round-off such as
# 0.29 * 100 = 28.999999999999996 does not drop a sample.
_FLOOR_SLACK = 1e-9


def classes_rarest_first(class_counts: Sequence[int], tiebreak: Sequence[int] | None = None) -> np.ndarray:
    """Class ids from the rarest to the most frequent: by count, ties by ``tiebreak`` (smaller first), then by id.

    The one ranking of classes by frequency, so that CReST's rates and evaluation's tail classes
    never disagree about which class is rarer. ``tiebreak`` is each class's whole training count
    (labeled + unlabeled): rounding up the labels ties classes of different sizes (with 10% labels
    a class of 28 images and one of 21 both get 3), and the smaller class is the rarer whatever
    the ids, so the ranking does not depend on ``data.class_order``. Full ties go to the lower id.
    """
    counts = np.asarray(class_counts)
    second = np.zeros_like(counts) if tiebreak is None else np.asarray(tiebreak)
    if second.shape != counts.shape:
        raise ValueError(f"expected a tiebreak count for each of the {counts.size} classes, got {second.size}")
    return np.lexsort((np.arange(counts.size), second, counts))


def crest_rates(class_counts: Sequence[int], alpha: float = 3.0) -> np.ndarray:
    """CReST per-class sampling rates, indexed by class id.

    The class of frequency rank ``l`` (1 = most frequent in the labeled set) is sampled at
    ``mu_l = (N_{L+1-l} / N_1) ** (1 / alpha)``: the head gets the smallest rate (the tail/head
    ratio), the tail gets 1. Classes tied in labeled count share one rate, the mean of the rates of
    the ranks they hold together. Why: the labeled counts are all the algorithm may know (the
    unlabeled images' classes are hidden from it), and they cannot tell tied classes apart; ranked by
    id instead, as the official code does, the rates changed with ``data.class_order`` and a class
    with fewer images could keep a smaller share of its pseudo-labels than a bigger one.

    ``alpha`` here is the official CODE's flag, used as the exponent ``1/alpha`` (default 3 in both
    official codes). The paper writes the exponent itself as alpha; paper-alpha = 1 / code-alpha.
    gamma = 100, L = 10, alpha = 3: the whole training set's counts (5000 ... 50) give 0.215, 0.255, ...; the
    labeled counts Relay ranks ([500, 300, ..., 5] at beta 0.1) give 0.215, 0.262, ..., 0.843, 1.0, head to tail.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise ValueError(f"crest_rates: expected a non-negative count per class, got {list(class_counts)}")
    if alpha <= 0:
        raise ValueError(f"crest_rates: expected alpha > 0 (used as exponent 1/alpha), got {alpha}")
    order = classes_rarest_first(counts)[::-1]  # order[i] = class id with rank i + 1
    sorted_counts = counts[order]
    if sorted_counts[0] <= 0:
        raise ValueError("crest_rates: every class count is 0; the labeled set is empty")
    # N_L = 0 would give the head the rate (0 / N_1)^(1/alpha) = 0: none of its pseudo-labels kept.
    if sorted_counts[-1] <= 0:
        empty = sorted(np.flatnonzero(counts <= 0).tolist())
        raise ValueError(
            f"crest_rates: classes {empty} have 0 labeled images, which would give the head class rate 0 "
            "(every one of its pseudo-labels dropped); every class needs at least 1 label"
        )
    by_rank = (sorted_counts[::-1] / sorted_counts[0]) ** (1.0 / alpha)
    rates = np.empty_like(counts)
    for count in np.unique(sorted_counts):  # a tie's ranks are consecutive: they share their mean rate
        ranks = sorted_counts == count
        rates[order[ranks]] = by_rank[ranks].mean()
    return rates


def _check_predictions(name: str, pred_class: np.ndarray, confidence: np.ndarray, num_classes: int) -> None:
    if pred_class.shape != confidence.shape or pred_class.ndim != 1:
        raise ValueError(
            f"{name}: expected pred_class and confidence as 1-D arrays of equal length, "
            f"got shapes {pred_class.shape} and {confidence.shape}"
        )
    if pred_class.size and (pred_class.min() < 0 or pred_class.max() >= num_classes):
        raise ValueError(
            f"{name}: expected predicted classes in [0, {num_classes}), got range "
            f"[{pred_class.min()}, {pred_class.max()}]; check num_classes / the rates vector"
        )


def _sorted_by_class_then_confidence(pred_class: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Row order grouping rows by predicted class, each group by confidence descending (stable)."""
    return np.lexsort((-confidence.astype(np.float64), pred_class))


def select_crest(
    pred_class: np.ndarray,
    confidence: np.ndarray,
    rates: np.ndarray,
    mode: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rows (int64, ascending) of the pseudo-label table that join the labeled set.

    "top" (the official code, deterministic): within each predicted class ``c`` keep the
    ``floor(rates[c] * n_c)`` most confident predictions (ties: lower row first).
    "bernoulli" (the paper's wording): keep each row independently with probability ``rates[c]``.
    ``rng`` is used by "bernoulli" only.
    """
    pred_class = np.asarray(pred_class, dtype=np.int64)
    confidence = np.asarray(confidence)
    rates = np.asarray(rates, dtype=np.float64)
    if mode not in SELECTION_MODES:
        raise ValueError(f"select_crest: unknown mode {mode!r}; expected one of {SELECTION_MODES}")
    if rates.ndim != 1 or (rates < 0).any() or (rates > 1).any():
        raise ValueError(f"select_crest: expected rates in [0, 1] per class, got {rates.tolist()}")
    _check_predictions("select_crest", pred_class, confidence, rates.size)
    if mode == "bernoulli":
        return np.flatnonzero(rng.random(pred_class.size) < rates[pred_class]).astype(np.int64)
    counts = np.bincount(pred_class, minlength=rates.size)
    keep_per_class = np.floor(rates * counts + _FLOOR_SLACK).astype(np.int64)
    order = _sorted_by_class_then_confidence(pred_class, confidence)
    group_start = np.cumsum(counts) - counts
    rank_in_class = np.arange(order.size) - group_start[pred_class[order]]
    kept = order[rank_in_class < keep_per_class[pred_class[order]]]
    return np.sort(kept).astype(np.int64)


def filter_and_balance(
    pred_class: np.ndarray,
    confidence: np.ndarray,
    num_classes: int,
    min_confidence: float,
    per_class: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Noisy Student data balancing: rows (int64, may repeat) of the pseudo-labeled set to train on.

    1. drop rows with ``confidence < min_confidence`` (0.3 in the paper);
    2. per predicted class keep the ``per_class`` (K) most confident rows;
    3. a class with ``0 < n < K`` rows is duplicated up to exactly K: every row ``K // n`` times,
       plus ``K % n`` rows drawn without replacement by ``rng``. A class with no rows stays empty.
    Returned rows are grouped by class, most confident first within the unique part.
    """
    pred_class = np.asarray(pred_class, dtype=np.int64)
    confidence = np.asarray(confidence)
    if per_class < 1:
        raise ValueError(f"filter_and_balance: expected per_class >= 1, got {per_class}")
    _check_predictions("filter_and_balance", pred_class, confidence, num_classes)
    rows = np.flatnonzero(confidence >= min_confidence)
    order = rows[_sorted_by_class_then_confidence(pred_class[rows], confidence[rows])]
    picked: list[np.ndarray] = []
    for members in np.split(order, np.cumsum(np.bincount(pred_class[order], minlength=num_classes))[:-1]):
        if members.size >= per_class:
            picked.append(members[:per_class])
        elif members.size > 0:
            repeats, rest = divmod(per_class, members.size)
            extra = rng.choice(members, size=rest, replace=False)
            picked.append(np.concatenate([np.tile(members, repeats), extra]))
    return np.concatenate(picked).astype(np.int64) if picked else np.empty(0, dtype=np.int64)
