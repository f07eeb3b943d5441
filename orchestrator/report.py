"""Plain-text tables of per-generation metrics, for the terminal and the README."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _prefixed(row: Mapping[str, Any], prefix: str) -> str:
    """Every metric under `prefix/`, ordered by its numeric suffix, as one compact column."""
    keys = sorted((k for k in row if k.startswith(prefix + "/")), key=lambda k: int(k.rsplit("/", 1)[1]) if k.rsplit("/", 1)[1].isdigit() else k)
    return " ".join(str(int(row[k])) if float(row[k]).is_integer() else f"{row[k]:.3f}" for k in keys) or "-"


def _cell(row: Mapping[str, Any], column: str) -> str:
    if column.endswith("/*"):
        return _prefixed(row, column[:-2])
    value = row.get(column)
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.4f}"


def generation_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """One line per generation; columns map a header to a metric, `name/*` expands to per-class values."""
    headers = ["generation", *columns]
    body = [[str(row.get("generation", "?")), *(_cell(row, metric) for metric in columns.values())] for row in rows]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [headers, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
