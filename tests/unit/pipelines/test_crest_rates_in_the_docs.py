"""The CReST rate list docs/ALGORITHMS.md quotes is the one Relay computes, on the counts it names.

Why: the doc quoted the rates of the whole training set's counts (0.255, 0.303, ...) while Relay ranks
the labeled counts, whose rates differ in the middle ranks (0.262, 0.304, ...).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.long_tail import labeled_counts, long_tailed_counts
from pipelines.sampling import crest_rates

ALGORITHMS = Path(__file__).resolve().parents[3] / "docs" / "ALGORITHMS.md"


def quoted_rates(after: str) -> list[float]:
    """The first backticked list of numbers in the CReST section after ``after``, the doc's line breaks joined."""
    text = ALGORITHMS.read_text(encoding="utf-8")
    section = text[text.index("## CReST and CReST+") :]
    tail = " ".join(section[section.index(after) :].split())
    found = re.search(r"`(0\.\d+(?:, [\d.]+)+)`", tail)
    assert found, f"no rate list after {after!r}"
    return [float(value) for value in found.group(1).split(", ")]


def rounded_head_to_tail(counts: list[int]) -> list[float]:
    return [round(rate, 3) for rate in sorted(crest_rates(counts, alpha=3.0))]


def test_the_quoted_rates_are_relays_on_the_labeled_counts() -> None:
    labeled = labeled_counts(long_tailed_counts(5000, 100, 10), 0.1)
    assert labeled == [500, 300, 180, 108, 65, 39, 24, 14, 9, 5]
    assert quoted_rates("crest_rates` gives") == rounded_head_to_tail(labeled)


def test_the_whole_training_sets_rates_are_quoted_as_such() -> None:
    assert quoted_rates("training set's counts") == rounded_head_to_tail(long_tailed_counts(5000, 100, 10))
