"""CReST's rates rank tied labeled counts as the tail classes do: by the whole training count, then by id.

Rounding up the labels ties classes of different sizes. Ranked by id, the tied classes' rates
depended on data.class_order, and the smaller class could keep a smaller share of its
pseudo-labels than the bigger one.
"""

import numpy as np
import pytest

from pipelines.evaluation import tail_classes
from pipelines.sampling import crest_rates

# Classes 1 and 2 both have 3 labels; class 1 is the smaller (21 images against 28): by id it
# ranked as the more frequent of the two, by its size it is the rarer.
LABELED = [9, 3, 3, 2, 1]
WHOLE = [90, 21, 28, 15, 10]


def test_tied_labeled_counts_go_to_the_class_with_fewer_training_images():
    rates = crest_rates(LABELED, alpha=1.0, tiebreak=WHOLE)
    # head-first ranks: 0, 2, 1, 3, 4; rank l gets N_{L+1-l} / N_1 with N = 9, 3, 3, 2, 1
    assert rates.tolist() == pytest.approx([1 / 9, 3 / 9, 2 / 9, 3 / 9, 1.0])
    assert rates[1] > rates[2], "the smaller of the tied classes keeps the larger share"


def test_the_rates_do_not_depend_on_the_class_order():
    rates = crest_rates(LABELED, alpha=3.0, tiebreak=WHOLE)
    rename = np.array([4, 3, 2, 1, 0])  # data.class_order reversed: class c becomes rename[c]
    labeled, whole = np.empty(5, dtype=int), np.empty(5, dtype=int)
    labeled[rename], whole[rename] = LABELED, WHOLE
    renamed_rates = crest_rates(labeled, alpha=3.0, tiebreak=whole)
    np.testing.assert_allclose(renamed_rates[rename], rates, rtol=0, atol=1e-12)


def test_no_class_outside_the_tail_keeps_a_larger_share_than_a_tail_class():
    rates = crest_rates(LABELED, alpha=1.0, tiebreak=WHOLE)
    tail = tail_classes(LABELED, fraction=0.6, tiebreak=WHOLE)
    assert tail == [4, 3, 1]
    assert min(rates[tail]) >= max(np.delete(rates, tail))


def test_full_ties_go_to_the_lower_id_in_both_rankings():
    counts = [5, 3, 3, 2, 1]
    rates = crest_rates(counts, alpha=1.0)
    assert rates.tolist() == pytest.approx([1 / 5, 3 / 5, 2 / 5, 3 / 5, 1.0])
    assert tail_classes(counts, fraction=0.6) == [4, 3, 1], "class 1 is the rarer of the tied classes here too"


def test_a_tiebreak_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="tiebreak count for each of the 5 classes, got 3"):
        crest_rates(LABELED, tiebreak=WHOLE[:3])
