"""The terminal table of `relay generations` and `relay run`: `name/*` columns that a reader can read."""

from orchestrator.tracking import report


def test_named_values_in_a_star_column_carry_their_names():
    """Domain similarity: sources come out sorted by name, not in the config's order, so each is labelled."""
    row = {"generation": 1, "similarity/svhn": 0.941, "similarity/mnist": 0.986, "similarity/digits_b": 0.947}
    table = report.generation_table([row], {"similarity": "similarity/*"})
    assert table.splitlines()[2].split(None, 1)[1] == "digits_b=0.947 mnist=0.986 svhn=0.941"


def test_numbered_values_read_in_class_order_and_named_ones_follow_labelled():
    """Class ids sort by number (`kept/10` after `kept/2`); a named key beside them neither breaks the sort
    (an int compared with a str) nor passes for one more class."""
    row = {"generation": 0, "kept/10": 3, "kept/2": 5.0, "kept/0": 1, "kept/other": 7}
    assert report.generation_table([row], {"kept": "kept/*"}).splitlines()[2].split() == ["0", "1", "5", "3", "other=7"]


def test_a_fraction_of_exactly_one_keeps_its_decimals_and_a_count_column_stays_whole() -> None:
    rows = [
        {"generation": 0, "evaluate/balanced_accuracy": 0.95, "pseudo_label/rows": 100.0},
        {"generation": 1, "evaluate/balanced_accuracy": 1.0, "pseudo_label/rows": 200.0},
    ]
    table = report.generation_table(
        rows, {"balanced_accuracy": "evaluate/balanced_accuracy", "rows": "pseudo_label/rows"}
    )
    last = table.splitlines()[-1].split()
    assert last == ["1", "1.0000", "200"], table


def test_a_fraction_of_exactly_one_in_every_generation_keeps_its_decimals() -> None:
    """Noisy Student's picks accuracy read "1" in both generations beside four-decimal columns."""
    rows = [{"generation": g, "picks/accuracy": 1.0, "picks/rows": 1.0 + g} for g in range(2)]
    table = report.generation_table(rows, {"picks_accuracy": "picks/accuracy", "picks": "picks/rows"})
    assert [line.split()[1:] for line in table.splitlines()[2:]] == [["1.0000", "1"], ["1.0000", "2"]]


def test_a_count_that_is_zero_in_every_generation_prints_as_a_count() -> None:
    """A filter that kept nothing: `kept` read 0.0000 where the same column of another run read 89."""
    rows = [{"generation": g, "filter/kept_total": 0.0, "evaluate/balanced_accuracy": 0.5} for g in range(2)]
    table = report.generation_table(
        rows, {"kept": "filter/kept_total", "balanced_accuracy": "evaluate/balanced_accuracy"}
    )
    assert [line.split()[1:] for line in table.splitlines()[2:]] == [["0", "0.5000"], ["0", "0.5000"]]


def test_a_count_column_with_a_zero_stays_whole() -> None:
    rows = [{"generation": 0, "filter/kept_total": 0.0}, {"generation": 1, "filter/kept_total": 89.0}]
    table = report.generation_table(rows, {"kept": "filter/kept_total"})
    assert [line.split()[1] for line in table.splitlines()[2:]] == ["0", "89"]


def test_whole_zeros_and_ones_alone_stay_fractions() -> None:
    """An accuracy of 0.0 then 1.0 (a tiny test set) is no count: neither value may pass for one."""
    rows = [{"generation": 0, "picks/accuracy": 0.0}, {"generation": 1, "picks/accuracy": 1.0}]
    table = report.generation_table(rows, {"picks_accuracy": "picks/accuracy"})
    assert [line.split()[1] for line in table.splitlines()[2:]] == ["0.0000", "1.0000"]


def test_the_metric_table_prints_an_all_zero_count_whole() -> None:
    rows = [{"generation": g, "filter/kept_total": 0.0, "evaluate/accuracy": 1.0} for g in range(2)]
    lines = report.metric_table(rows).splitlines()
    assert lines[2].split() == ["evaluate/accuracy", "1.0000", "1.0000"]
    assert lines[3].split() == ["filter/kept_total", "0", "0"]
