"""A fraction that is 0 in every generation prints with four decimals, as the columns beside it do.

Why: a smoke run's closing table read `tail_recall 0` beside `balanced_accuracy 0.4700`: a column
of whole zeros passed for a count (`kept` of a filter that kept nothing), though its name says fraction.
"""

from orchestrator.tracking import descriptions, report


def test_a_tail_recall_of_zero_in_every_generation_prints_like_the_other_fractions() -> None:
    rows = [{"generation": g, "evaluate/balanced_accuracy": 0.47, "evaluate/tail_recall": 0.0} for g in range(2)]
    table = report.generation_table(
        rows, {"balanced_accuracy": "evaluate/balanced_accuracy", "tail_recall": "evaluate/tail_recall"}
    )
    assert [line.split()[1:] for line in table.splitlines()[2:]] == [["0.4700", "0.0000"], ["0.4700", "0.0000"]]


def test_every_fraction_named_column_of_zeros_keeps_its_decimals_and_a_count_of_zeros_stays_whole() -> None:
    fractions = ["evaluate/tail_recall", "filter/picks_accuracy", "pseudo_label/accuracy", "masks/fit_fraction"]
    row = {"generation": 0, "filter/kept_total": 0.0, "filter/dropped_low_confidence": 0.0}
    row.update(dict.fromkeys(fractions, 0.0))
    columns = {name: name for name in [*fractions, "filter/kept_total", "filter/dropped_low_confidence"]}
    cells = report.generation_table([row], columns).splitlines()[2].split()[1:]
    assert cells == ["0.0000"] * len(fractions) + ["0", "0"]


def test_the_metric_table_prints_a_tail_recall_of_zero_with_decimals() -> None:
    rows = [{"generation": g, "evaluate/tail_recall": 0.0, "filter/kept_total": 0.0} for g in range(2)]
    lines = report.metric_table(rows).splitlines()
    assert lines[2].split() == ["evaluate/tail_recall", "0.0000", "0.0000"]
    assert lines[3].split() == ["filter/kept_total", "0", "0"]


def test_the_run_description_reads_fractions_and_counts_as_the_terminals_table_does() -> None:
    """The description's Markdown table printed any whole value as a whole number: a balanced accuracy of
    1.0 read "1" beside 0.9500 and a tail recall of 0 read "0"; counts stay whole there as in the terminal."""
    rows = [
        {"generation": 0, "evaluate/balanced_accuracy": 0.95, "evaluate/tail_recall": 0.0, "filter/kept_total": 89.0},
        {"generation": 1, "evaluate/balanced_accuracy": 1.0, "evaluate/tail_recall": 0.0, "filter/kept_total": 120.0},
    ]
    lines = descriptions.closing_note("Run finished.", rows).splitlines()
    assert lines[-4] == "| generation | evaluate/balanced_accuracy | evaluate/tail_recall | filter/kept_total |"
    assert lines[-2:] == ["| 0 | 0.9500 | 0.0000 | 89 |", "| 1 | 1.0000 | 0.0000 | 120 |"]
