"""Per-class metrics on hand-worked examples."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.evaluation import class_metrics, evaluate_model, tail_classes


def test_balanced_accuracy_differs_from_accuracy_on_imbalanced_labels():
    labels = np.array([0] * 8 + [1] * 2)
    preds = np.zeros(10, dtype=np.int64)  # a model that ignores the rare class
    metrics = class_metrics(preds, labels, num_classes=2)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)  # mean of recalls [1.0, 0.0]
    assert metrics["recall"] == pytest.approx([1.0, 0.0])
    assert metrics["precision"] == pytest.approx([0.8, 0.0])  # class 1 never predicted -> 0
    assert metrics["confusion"] == [[8, 0], [2, 0]]


def test_three_class_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 1, 0, 1, 2, 2])
    metrics = class_metrics(preds, labels, num_classes=3)
    assert metrics["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["recall"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert metrics["precision"] == pytest.approx([1.0, 1 / 2, 1 / 2])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_absent_class_has_zero_recall_and_is_left_out_of_balanced_accuracy():
    metrics = class_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), num_classes=3)
    assert metrics["recall"] == pytest.approx([0.5, 1.0, 0.0])  # class 2 never occurs: 0, not NaN
    assert all(math.isfinite(value) for value in metrics["recall"] + metrics["precision"])
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)


def test_a_class_predicted_but_absent_from_the_labels_does_not_count_in_balanced_accuracy():
    metrics = class_metrics(np.array([0, 2, 1]), np.array([0, 0, 1]), num_classes=3)
    assert metrics["recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert metrics["precision"] == pytest.approx([1.0, 1.0, 0.0])
    assert metrics["balanced_accuracy"] == pytest.approx(0.75)
    assert metrics["confusion"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_class_metrics_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_metrics(np.array([0, 1]), np.array([0, 2]), num_classes=2)


def test_tail_classes_rank_by_count_not_id():
    assert tail_classes([10, 500, 3, 70, 5], fraction=0.4) == [2, 4]  # ceil(0.4 * 5) = 2 rarest
    assert tail_classes([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50], 0.3) == [9, 8, 7]
    assert tail_classes([50, 83, 139, 232, 387, 645, 1077, 1796, 2997, 5000], 0.3) == [0, 1, 2]
    assert len(tail_classes(list(range(1, 101)), fraction=0.07)) == 7  # 0.07 * 100 = 7.000000000000001


def test_balanced_classes_have_no_tail():
    """Ranked by id alone, the "tail" of balanced data was classes 0-2, and KE showed their recall as tail_recall."""
    assert tail_classes([40] * 10, 0.3) == []
    assert tail_classes([4] * 10, 0.3, tiebreak=[40] * 10) == []
    assert tail_classes([4] * 10, 0.3, tiebreak=[40] * 9 + [30]) == [9, 0, 1]  # one smaller class: a tail, ties by id


def test_tail_classes_break_label_count_ties_by_the_whole_class_size():
    """digits-LT, beta 0.1: ranks 6 and 7 (28 and 21 images) both have 3 labels; the smaller is in the tail."""
    labeled = [13, 10, 8, 6, 5, 4, 3, 3, 2, 2]
    whole = [130, 100, 77, 60, 46, 36, 28, 21, 16, 13]
    assert sorted(tail_classes(labeled, 0.3)) == [6, 8, 9]  # by id alone the bigger class 6 got in
    assert tail_classes(labeled, 0.3, tiebreak=whole) == [9, 8, 7]
    with pytest.raises(ValueError, match="tiebreak"):
        tail_classes(labeled, 0.3, tiebreak=whole[:5])


class _Brightness(nn.Module):
    """Predicts class 0 for bright images, class 1 for dark ones."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3)) + self.bias
        return torch.stack([mean, -mean], dim=1)


def test_evaluate_model_end_to_end():
    bright = torch.full((3, 1, 4, 4), 250, dtype=torch.uint8)
    dark = torch.full((2, 1, 4, 4), 5, dtype=torch.uint8)
    images = torch.cat([bright, dark])
    labels = torch.tensor([0, 0, 1, 1, 1])
    metrics = evaluate_model(_Brightness(), images, labels, num_classes=2, device="cpu", batch_size=2)
    # predictions [0, 0, 0, 1, 1]: recall [1, 2/3]
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
