"""docs/CONFIG.md's `crest.alpha` names the counts its rate formula ranks: the labeled set's, as the code does.

Before, it gave `(N_{L+1-l} / N_1) ^ (1 / alpha)` with no word on N, and the nearest N_1 in the file,
`data.head_count`'s, counts labeled plus unlabeled images; the rebalance stage ranks the labeled class counts
(``labeled_class_counts``), the only counts the algorithm may know.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.sampling import crest_rates

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"


def crest_alpha_item() -> str:
    """The `crest.alpha` bullet of docs/CONFIG.md, its lines joined."""
    text = REFERENCE.read_text()
    found = re.search(r"^- `crest\.alpha`.*?(?=^- `)", text, flags=re.S | re.M)
    assert found, "docs/CONFIG.md has no `crest.alpha` item"
    return " ".join(found.group(0).split())


def test_the_formula_is_said_to_rank_the_labeled_class_counts() -> None:
    item = crest_alpha_item()
    assert "(N_{L+1-l} / N_1) ^ (1 / alpha)" in item
    assert "N_1 >= ... >= N_L are the LABELED set's class counts" in item


def test_the_example_is_what_the_code_gives() -> None:
    """Labeled counts 20, 16, 12, 10, 7, 6, 5, 4, 3, 2 at alpha 3: the head keeps (2/20)^(1/3), the next
    (3/20)^(1/3), the tail all."""
    item = crest_alpha_item()
    rates = crest_rates([20, 16, 12, 10, 7, 6, 5, 4, 3, 2], 3)
    assert "labeled counts 20, 16, 12, 10, 7, 6, 5, 4, 3, 2 with alpha 3" in item
    assert f"`(2/20)^(1/3)` = {rates[0]:.2f} (head)" in item
    assert f"`(3/20)^(1/3)` = {rates[1]:.2f}" in item
    assert rates[-1] == pytest.approx(1.0)
