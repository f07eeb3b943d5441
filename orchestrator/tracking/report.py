"""Plain-text tables of per-generation metrics, for the terminal and the README."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _prefixed(row: Mapping[str, Any], prefix: str) -> str:
    """Every metric under `prefix/` as one compact column: numbered ones by number, named ones labelled.

    Class ids (`rebalance/kept/3`) read as a list in class order. Names (`similarity/mnist`) come
    out sorted, which is not the config's order, so each value carries its name: a bare
    "0.986 0.947" would be read against the order the config lists the sources in.
    """
    suffixes = sorted((k[len(prefix) + 1 :] for k in row if k.startswith(prefix + "/")), key=_suffix_order)
    cells = [
        _compact(row[f"{prefix}/{s}"]) if s.isdigit() else f"{s}={_compact(row[f'{prefix}/{s}'])}" for s in suffixes
    ]
    return " ".join(cells) or "-"


def _suffix_order(suffix: str) -> tuple[int, int, str]:
    """Numbered suffixes first, by value; named ones after them, by name (never an int compared with a str)."""
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def _compact(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def table_cell(row: Mapping[str, Any], column: str, counts: bool) -> str:
    """One value: a whole number in a column of counts (``counts``), else four decimals (1.0 reads 1.0000)."""
    if column.endswith("/*"):
        return _prefixed(row, column[:-2])
    value = row.get(column)
    if value is None:
        return "-"
    return str(int(value)) if counts else f"{value:.4f}"


# Words that name a fraction in a metric's last part (`tail_recall`, `picks_accuracy`, `rate`): never a count.
FRACTION_WORDS = frozenset({"accuracy", "recall", "precision", "rate", "fraction", "similarity"})


def is_counts_column(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether a column reads as counts (rows, picks, steps): every value whole, and one above 1 or every one 0.

    MLflow keeps every metric as a float, so a count is told from a fraction by its column: a
    balanced accuracy of exactly 1.0 in one generation must not print as "1" beside 0.9500, nor
    a picks accuracy of 1.0 in every generation as "1" beside four-decimal columns. A column of
    zeros alone (`kept` of a filter that kept nothing) prints "0" as the same count prints "89" in
    another run, not "0.0000". A metric whose name says it is a fraction (``FRACTION_WORDS``) is
    never a count: a smoke run's tail_recall of 0 in every generation read "0" beside 0.4700.
    Only whole values of 0 and 1 alone stay fractions: they may be either.
    """
    if _names_a_fraction(column):
        return False
    values = [abs(float(row[column])) for row in rows if row.get(column) is not None]
    if not values or not all(v.is_integer() for v in values):
        return False
    return any(v > 1 for v in values) or all(v == 0 for v in values)


def _names_a_fraction(metric: str) -> bool:
    """Whether the last part of ``metric`` (`evaluate/tail_recall`) has a word of ``FRACTION_WORDS``."""
    return not FRACTION_WORDS.isdisjoint(metric.rsplit("/", 1)[-1].split("_"))


def text_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a dashed rule: the terminal tables of `relay generations`, `runs` and `tune`."""
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [headers, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def generation_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """One line per generation; columns map a header to a metric, `name/*` expands to per-class values."""
    counts = {metric: is_counts_column(rows, metric) for metric in columns.values()}
    body = [
        [str(row.get("generation", "?")), *(table_cell(row, metric, counts[metric]) for metric in columns.values())]
        for row in rows
    ]
    return text_table(["generation", *columns], body)


def metric_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every metric any row has, sorted so runs line up column by column (a table for any pipeline)."""
    return sorted({key for row in rows for key in row if key != "generation"})


def metric_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Every metric on a line of its own, one column per generation; a numbered family (`evaluate/recall/0` ...) on one.

    For a run whose pipeline, and so whose few summary columns, is not known: every metric of a
    10-class CReST run as a column made a table about 60 columns (over 1000 characters) wide; as
    lines, families grouped, it is 23 lines that read at any width.
    """
    metrics = list(dict.fromkeys(_family(name) for name in metric_names(rows)))
    counts = {metric: is_counts_column(rows, metric) for metric in metrics}
    body = [[metric, *(table_cell(row, metric, counts[metric]) for row in rows)] for metric in metrics]
    return text_table(["metric", *(f"g{row.get('generation', 0):02d}" for row in rows)], body)


def _family(metric: str) -> str:
    """`evaluate/recall/3` -> `evaluate/recall/*` (a column of ``_cell`` for the whole family); others unchanged."""
    family, _, last = metric.rpartition("/")
    return f"{family}/*" if family and last.isdigit() else metric


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`generation` first, then every metric."""
    return ["generation", *metric_names(rows)]


def generation_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Every per-generation metric as CSV, one row per generation (the parent run's summary table)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def generation_html(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """The same table as a standalone HTML page; MLflow's artifact viewer renders it."""
    from html import escape

    columns = _columns(rows)

    def cell(value: Any) -> str:
        return "" if value is None else escape(f"{value:.4f}" if isinstance(value, float) else str(value))

    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    style = "table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{style}</style>"
        f"</head><body><h3>{escape(title)}</h3><table><tr>{head}</tr>{body}</table></body></html>\n"
    )
