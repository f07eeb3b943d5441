"""predict_probs on no image says which set was empty, not only that it got 0 images.

Before the fix: a run on a dataset with an empty test split ended with `predict_probs: got 0 images; expected at least
one. Fix the cause.`, which named no cause. The preflight now refuses such a dataset; a set that is empty
all the same (a selection, a pool) still gets a message that says what was empty.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.pseudo_label import predict_probs


def test_no_image_names_the_empty_set() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(
        ValueError,
        match=r"^predict_probs: got 0 images; expected at least one: the set to evaluate "
        r"or label is empty \(a test split, a selection or a pool with no image\)$",
    ):
        predict_probs(model, torch.zeros((0, 1, 2, 2), dtype=torch.uint8), 8, "cpu")
