"""Per-class plots for a generation's MLflow run, returned as PNG bytes.

The stage returns the bytes; the driver logs them, so workers never talk to MLflow.
The Agg backend keeps this usable on machines without a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def per_class_bars(
    recall: Sequence[float],
    precision: Sequence[float],
    labeled_counts: Sequence[int],
    names: Sequence[int | str] | None = None,
) -> bytes:
    """Recall and precision per class, classes ordered head to tail by labeled count, so the tail is on the right.

    ``names``: what to call class ``c`` on the axis (its dataset id, and name: `2 cat`); default ``c``.
    """
    order = np.argsort(-np.asarray(labeled_counts), kind="stable")
    x = np.arange(len(order))
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar(x - 0.2, np.asarray(recall)[order], width=0.4, label="recall")
    axis.bar(x + 0.2, np.asarray(precision)[order], width=0.4, label="precision")
    shown = list(range(len(order))) if names is None else list(names)
    axis.set_xticks(x, [f"{shown[c]}\n(n={labeled_counts[c]})" for c in order])
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("class (labeled count), head to tail")
    axis.legend(loc="lower left")
    return _png(figure)


def confusion_matrix(confusion: Sequence[Sequence[int]]) -> bytes:
    """Counts of true class (rows) against predicted class (columns)."""
    matrix = np.asarray(confusion)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    figure.colorbar(image, ax=axis)
    return _png(figure)


def class_histogram(before: Sequence[int], after: Sequence[int], selection: str = "rebalancing") -> bytes:
    """Pseudo-labels per predicted class before and after a selection (CReST's rebalancing, Noisy Student's filter)."""
    x = np.arange(len(before))
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar(x - 0.2, before, width=0.4, label="pseudo-labeled")
    axis.bar(x + 0.2, after, width=0.4, label=f"kept after {selection}")
    axis.set_xticks(x)
    axis.set_xlabel("predicted class")
    axis.legend()
    return _png(figure)
