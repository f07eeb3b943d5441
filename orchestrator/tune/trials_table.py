"""The sweep's results from its trials' rows: the best trial and those tied with it, the records of
trials.csv and trials.json, and the plain-text table `relay tune` prints.

Apart from the rows because it ranks and writes them, and never reads Ray Tune: what it compares
is settled in ``trial_rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from orchestrator.tracking.report import text_table
from orchestrator.tune.trial_rows import FAILED, OPEN, TrialRow, in_start_order


def best_row(rows: Sequence[TrialRow], mode: str) -> TrialRow | None:
    """The best final value among the trials that got furthest (all generations, unless none did).

    A trial stopped after generation 0 is not compared on its generation-0
    value against trials that ran every generation. A tie goes to the trial Ray Tune numbered first
    (``in_start_order``), whatever order Ray lists the trials in. None while no scored trial has ended: a
    trial still open is compared only beside one that ended.

    Why: a Ctrl-C in a sweep's first trial wrote a best.yaml that named that trial its best, two lines
    above "sweep interrupted after 0 of 6 trials"; its metric was a partial one of a trial `--resume` reruns.
    A trial that failed is never the best, whatever it scored before (a learning rate that scored well
    at generation 0 and diverged at 1 beat the trials a scheduler stopped there), nor one whose final
    value is NaN (it won under max and min alike).
    """
    scored = [row for row in rows if row.by_generation and row.status != FAILED and not math.isnan(row.final())]
    if not any(row.status not in OPEN for row in scored):
        return None
    furthest = max(len(row.by_generation) for row in scored)
    candidates = [row for row in scored if len(row.by_generation) == furthest]
    pick = max if mode == "max" else min
    ordered = in_start_order(candidates)  # max and min keep the first of equals
    return pick(ordered, key=lambda row: row.final())


def tied_with(rows: Sequence[TrialRow], best: TrialRow) -> list[TrialRow]:
    """The other trials that reached as far as ``best`` with the same final value: the tie its start order broke."""
    return [
        row
        for row in rows
        if row is not best
        and row.status != FAILED
        and len(row.by_generation) == len(best.by_generation)
        and row.final() == best.final()
    ]


def trial_records(rows: Sequence[TrialRow]) -> list[dict[str, Any]]:
    """Flat records of the trials table, for trials.csv / trials.json: metrics as ``readable`` writes them,
    the trial's values exact in trials.json and readable in trials.csv (``ExactValue``)."""
    return [
        {
            "trial_id": row.trial_id,
            "run_id": row.run_id,
            "status": row.status,
            "generations": len(row.by_generation),
            **{key: exact_value(value) for key, value in row.values.items()},
            **{f"g{g:02d}": readable(value) for g, value in sorted(row.by_generation.items())},
        }
        for row in rows
    ]


SIGNIFICANT_DIGITS = 12


def readable(value: Any) -> Any:
    """A float rounded to 12 significant digits, so that the file shows 0.33, not 0.32999999999999996.

    Why 12: float arithmetic leaves its noise in the 16th-17th digit (a mean of per-class recalls,
    PBT's 0.2 * 0.8), and 12 digits clear the noise of thousands of such operations while
    keeping more than any metric can resolve (two accuracies over a million examples differ by
    at least 1e-12). A value the user wrote (a grid or choice entry) has fewer digits, so it is
    written exactly as given (Python writes the shortest text that reads back as the same float);
    a uniform sample is shown to 12 digits in trials.csv (trials.json, best.yaml and the trial's
    MLflow tags keep all of it: ``ExactValue``). Anything else is returned as it is.
    """
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


class ExactValue(float):
    """A trial's float value: exact in trials.json, shown to 12 significant digits in trials.csv.

    Why exact: `relay diff`, `relay runs` and the other readers of a trial rebuild its config from
    trials.json (a trial keeps no config.yaml), and a sample rounded there (crest.t_min 0.78796214352
    for 0.7879621435201636) read as a config that differed from its best.yaml, which holds all the
    digits. Why readable in trials.csv: that table is for people (PBT's 0.2 * 0.8 reads 0.16, not
    0.16000000000000003) and feeds no config back. ``json`` writes any float with ``float.__repr__``
    (the shortest text that reads back as the same float); ``csv`` writes a float with its own
    ``repr``, which this class makes ``readable``'s.
    """

    def __repr__(self) -> str:
        return repr(readable(float(self)))

    __str__ = __repr__


def exact_value(value: Any) -> Any:
    """A finite float as an ``ExactValue``; anything else as it is."""
    return ExactValue(value) if isinstance(value, float) and math.isfinite(value) else value


def trials_table(rows: Sequence[TrialRow], keys: Sequence[str], generations: int, best: TrialRow | None) -> str:
    """A plain-text table: values, the metric after every generation, how the trial ended."""
    headers = ["trial", *keys, *(f"g{g:02d}" for g in range(generations)), "status"]
    body = []
    for row in rows:
        cells = [row.trial_id + (" *" if row is best else ""), *(_fmt(row.values.get(k)) for k in keys)]
        cells += [_fmt(row.by_generation.get(g)) for g in range(generations)] + [row.status]
        body.append(cells)
    return text_table(headers, body)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
