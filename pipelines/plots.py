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
from matplotlib import ticker


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


MAX_TICKED_CLASSES = 30  # beyond this many classes every label would overlap its neighbours: matplotlib thins them


def confusion_figure(
    confusion: Sequence[Sequence[int]], names: Sequence[int | str] | None = None, title: str | None = None
) -> plt.Figure:
    """The confusion matrix's figure: every class labelled on both axes (up to MAX_TICKED_CLASSES).

    Why every class: matplotlib's default ticks labelled only 0, 2, 4, 6, 8 of ten digits, so the
    odd rows had to be counted out. ``names`` label class ``c`` (default ``c``); ``title`` names
    what was evaluated (a stage, a generation), which the image itself otherwise never says.
    """
    matrix = np.asarray(confusion)
    classes = len(matrix)
    side = min(4.5 + 0.15 * max(classes - 10, 0), 12.0)  # room for the labels of up to MAX_TICKED_CLASSES
    figure, axis = plt.subplots(figsize=(side, side * 0.9))
    image = axis.imshow(matrix, cmap="Blues")
    shown = [str(name) for name in (range(classes) if names is None else names)]
    if classes <= MAX_TICKED_CLASSES:
        axis.set_xticks(range(classes), shown, rotation=90 if max(map(len, shown), default=0) > 2 else 0)
        axis.set_yticks(range(classes), shown)
    else:
        for axis_of in (axis.xaxis, axis.yaxis):
            axis_of.set_major_locator(ticker.MaxNLocator(nbins=MAX_TICKED_CLASSES, integer=True))
            axis_of.set_major_formatter(ticker.FuncFormatter(lambda x, _: _class_label(shown, x)))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    figure.colorbar(image, ax=axis)
    return figure


def _class_label(shown: Sequence[str], position: float) -> str:
    """The label of the class at a thinned tick's position; none between or beyond the classes."""
    index = round(position)
    return shown[index] if 0 <= index < len(shown) and index == position else ""


def confusion_matrix(
    confusion: Sequence[Sequence[int]], names: Sequence[int | str] | None = None, title: str | None = None
) -> bytes:
    """Counts of true class (rows) against predicted class (columns), as PNG bytes (see ``confusion_figure``)."""
    return _png(confusion_figure(confusion, names, title))


def class_histogram(
    before: Sequence[int], after: Sequence[int], selection: str = "rebalancing", labels: Sequence[str] | None = None
) -> bytes:
    """Pseudo-labels per predicted class before and after a selection (CReST's rebalancing, Noisy Student's filter).

    ``labels`` name the classes on the axis (their dataset ids when `data.classes` picks a subset); by default
    their positions.
    """
    x = np.arange(len(before))
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar(x - 0.2, before, width=0.4, label="pseudo-labeled")
    axis.bar(x + 0.2, after, width=0.4, label=f"kept after {selection}")
    axis.set_xticks(x, labels=None if labels is None else list(labels))
    axis.set_xlabel("predicted class")
    axis.legend()
    return _png(figure)
