"""The evaluate stage's plots, drawn by real matplotlib: what a user reads off them in MLflow."""

import numpy as np

from pipelines import plots


def tick_labels(axis_of):
    axis_of.axes.figure.canvas.draw()  # thinned ticks get their labels when drawn
    return [label.get_text() for label in axis_of.get_ticklabels() if label.get_text()]


def test_the_confusion_matrix_labels_every_class_and_says_what_it_evaluated():
    """Matplotlib's default ticks labelled only 0, 2, 4, 6, 8 of ten digits; the plot had no title."""
    confusion = np.eye(10, dtype=int) * 5
    figure = plots.confusion_figure(confusion, title="g01/evaluate (generation 1)")
    (axis, _colorbar) = figure.axes
    assert tick_labels(axis.xaxis) == [str(c) for c in range(10)]
    assert tick_labels(axis.yaxis) == [str(c) for c in range(10)]
    assert axis.get_title() == "g01/evaluate (generation 1)"


def test_the_confusion_matrix_names_classes_as_the_dataset_does():
    figure = plots.confusion_figure(np.ones((3, 3), dtype=int), names=["5 five", "6 six", "7 seven"])
    assert tick_labels(figure.axes[0].xaxis) == ["5 five", "6 six", "7 seven"]
    assert figure.axes[0].get_title() == ""


def test_many_classes_thin_their_labels_to_whole_classes():
    classes = 100
    figure = plots.confusion_figure(np.eye(classes, dtype=int))
    shown = tick_labels(figure.axes[0].xaxis)
    assert 2 < len(shown) <= plots.MAX_TICKED_CLASSES + 1
    assert all(label in {str(c) for c in range(classes)} for label in shown)


def test_confusion_matrix_returns_png_bytes():
    assert plots.confusion_matrix([[1, 0], [0, 1]], title="evaluate").startswith(b"\x89PNG")
