"""CReST's rates treat classes tied in labeled count alike: the labeled counts are all the algorithm may know.

Rounding up the labels ties classes of different sizes. Ranked by id, the tied classes' rates
depended on data.class_order, and the smaller class could keep a smaller share of its
pseudo-labels than the bigger one. The unlabeled images' classes, which would tell them apart, are
hidden from the algorithm, so the tied classes share one rate.
"""

import numpy as np
import pytest

from pipelines.evaluation import tail_classes
from pipelines.sampling import crest_rates

# Classes 1 and 2 both have 3 labels; class 1 is the smaller (21 images against 28)
LABELED = [9, 3, 3, 2, 1]
WHOLE = [90, 21, 28, 15, 10]


def test_tied_labeled_counts_share_the_mean_rate_of_their_ranks():
    rates = crest_rates(LABELED, alpha=1.0)
    # head-first ranks hold N_{L+1-l} / N_1 with N = 9, 3, 3, 2, 1: 1/9, 2/9, 3/9, 3/9, 1; ranks 2 and 3 tie
    assert rates.tolist() == pytest.approx([1 / 9, 2.5 / 9, 2.5 / 9, 3 / 9, 1.0])


def test_the_rates_do_not_depend_on_the_class_order():
    rates = crest_rates(LABELED, alpha=3.0)
    rename = np.array([4, 3, 2, 1, 0])  # data.class_order reversed: class c becomes rename[c]
    labeled = np.empty(5, dtype=int)
    labeled[rename] = LABELED
    np.testing.assert_allclose(crest_rates(labeled, alpha=3.0)[rename], rates, rtol=0, atol=1e-12)


def test_no_class_outside_the_tail_keeps_a_larger_share_than_a_tail_class():
    rates = crest_rates(LABELED, alpha=1.0)
    tail = tail_classes(LABELED, fraction=0.6, tiebreak=WHOLE)
    assert tail == [4, 3, 1]
    assert min(rates[tail]) >= max(np.delete(rates, tail))


def test_a_tie_of_every_class_gives_every_class_the_same_rate():
    assert crest_rates([4, 4, 4], alpha=2.0).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_tail_classes_break_ties_by_the_whole_training_count_then_the_id():
    assert tail_classes([5, 3, 3, 2, 1], fraction=0.6) == [4, 3, 1], "full ties: the lower id"
    assert tail_classes([5, 3, 3, 2, 1], fraction=0.6, tiebreak=[50, 30, 20, 15, 10]) == [4, 3, 2]
