"""One row of a sweep's trials table per trial, from Ray Tune's results: its values, its metric after each
generation, and how it ended.

What a trial computed comes from two places that can disagree after an interrupt or a PBT clone
(its checkpoint, Tune's result file, its ledger), so the row merges them in one stated order; how
it ended is read from Tune's marks, not from the sweep's end (see ``_status``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import DONE_STATES, RunStatus, read_ledger
from orchestrator.errors import ArtifactError
from orchestrator.tune.plan import SweepPlan
from orchestrator.tune.space import clip_values
from orchestrator.tune.trial import TrialState
from orchestrator.tune.trial_failures import failure_line


@dataclass
class TrialRow:
    """One line of the trials table."""

    trial_id: str
    run_id: str
    values: dict[str, Any]
    by_generation: dict[int, float]
    status: str  # completed | stopped early | error | interrupted | unfinished
    started: int | None = None  # the trial's number in the order Ray Tune started trials (None: not known)
    error_file: str | None = None  # its error.txt in the sweep's folder, when it failed (and maybe was retried)
    error: str | None = None  # why it failed, one line (``failure_line``), when it ended failed

    def final(self) -> float | None:
        return self.by_generation[max(self.by_generation)] if self.by_generation else None


EXPR_ERROR_FILE = "error.txt"  # Ray Tune's name for a trial's errors (ray.air.constants), in the trial's folder


def error_file(plan: SweepPlan, result: Any) -> str | None:
    """The trial's `error.txt` in the sweep's folder when the trial failed, retried or not; None when it never did."""
    kept = plan.experiment_path / Path(result.path).name / EXPR_ERROR_FILE
    return str(kept) if result.error is not None or kept.is_file() else None


def tune_configs(grid: Any) -> list[Mapping[str, Any]]:
    """The sampled values Tune holds for each trial of ``grid``, in the grid's order.

    A trial that never started (PENDING when the sweep was interrupted) has no result, so
    ``result.config`` is empty; its config is known only to Tune's trial objects, which the
    ResultGrid keeps privately. Empty configs when this Ray version keeps them elsewhere.
    """
    trials = getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or []
    if len(trials) != len(grid):
        return [{} for _ in range(len(grid))]
    return [dict(getattr(trial, "config", None) or {}) for trial in trials]


def trial_row(plan: SweepPlan, result: Any, sampled: Mapping[str, Any] | None = None) -> TrialRow:
    """One trial's line of the table from its Ray Tune result.

    ``sampled``: the values Tune holds for the trial (``tune_configs``), for one that never reported.
    """
    found = re.search(r"[0-9a-f]{5}_\d{5}", Path(result.path).name)
    trial_id = str((result.metrics or {}).get("trial_id") or (found.group(0) if found else Path(result.path).name))
    by_generation = {**computed_by_generation(plan, f"{plan.name}-{trial_id}"), **reported_by_generation(plan, result)}
    config = result.config or sampled or {}  # a trial that never started has no result, hence no result.config
    values = clip_values({k: config[k] for k in plan.settings.space if k in config}, plan.settings.space)
    status = _status(plan, result, by_generation)
    started = start_number(result, trial_id)
    error = failure_line(result.error) if result.error is not None else None
    return TrialRow(
        trial_id, f"{plan.name}-{trial_id}", values, by_generation, status, started, error_file(plan, result), error
    )


def start_number(result: Any, trial_id: str) -> int | None:
    """The trial's number in the order Ray Tune created, and so started, the sweep's trials; None when not known.

    Tune numbers each trial as it creates it (``experiment_tag`` ``"3_train.lr=0.01"``, also in its
    folder's name after the trial id) and starts pending trials in that order. Why not the trial
    id: with ``search: optuna`` ids are random hex, so sorting by them is no order at all.
    """
    tag = str((result.metrics or {}).get("experiment_tag") or Path(result.path).name.partition(f"{trial_id}_")[2])
    number = tag.partition("_")[0]
    return int(number) if number.isdigit() else None


def in_start_order(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """The trials in Ray Tune's trial order, their number (the table, trials.csv, ties): the order Ray Tune created
    them, which is the order they started when they run one at a time; any not numbered last, as Ray lists them."""
    return sorted(rows, key=lambda row: (row.started is None, row.started or 0))


def reported_by_generation(plan: SweepPlan, result: Any) -> dict[int, float]:
    """Generation -> metric, the trial's checkpoint winning over Tune's result file.

    The checkpoint (TrialState.reported) is written with every report and holds the lineage
    the trial's models come from: after a PBT clone, the generations of the trial it copied.
    Tune's result file keeps the trial's own pre-clone lines, and can lose a paused trial's
    lines (TrialState); it only fills generations the checkpoint lacks.
    """
    by_generation: dict[int, float] = {}
    frame = result.metrics_dataframe
    if frame is not None and plan.settings.metric in frame:
        for generation, value in zip(frame["generation"], frame[plan.settings.metric]):
            by_generation[int(generation)] = float(value)
    if result.checkpoint:
        by_generation.update(TrialState.from_checkpoint(result.checkpoint).reported)
    return by_generation


def computed_by_generation(plan: SweepPlan, run_id: str) -> dict[int, float]:
    """Generation -> metric as the trial's ledger holds it: what the trial computed, reported to Tune or not.

    A Ctrl-C between a generation's metric stage and the trial's report to Tune left the value
    only in the trial's records (its ledger, its MLflow run): the table showed the generation as
    `-` and the trial as unfinished, though `relay runs` listed its metric. What Tune got wins
    (``reported_by_generation``: after a PBT clone it is the lineage's); this fills the rest.
    An unreadable ledger adds nothing: the table still has what Tune got.
    """
    try:
        ledger = read_ledger(ArtifactStore(plan.store_uri), run_id) or {}
    except (ArtifactError, OSError, ValueError):
        return {}
    stages = ledger.get("stages") if isinstance(ledger.get("stages"), dict) else {}
    computed: dict[int, float] = {}
    for generation, stage in enumerate(plan.report_stages):
        entry = stages.get(stage)
        metrics = entry.get("metrics") if isinstance(entry, dict) and entry.get("state") in DONE_STATES else None
        if isinstance(metrics, dict) and isinstance(metrics.get(plan.metric_name), int | float):
            computed[generation] = float(metrics[plan.metric_name])
    return computed


OPEN = ("interrupted", "unfinished")  # statuses of a trial that `relay tune --resume` goes on with
FAILED = "error"  # the status of a trial that ended failed


def _status(plan: SweepPlan, result: Any, by_generation: Mapping[int, float]) -> str:
    """completed | stopped early | error | interrupted | unfinished.

    A trial is stopped early only if Tune marked its last result done: the scheduler marks the
    result it stops a running trial on, and SuccessiveHalving the one a paused trial it stops
    reported last. Tune marks none on a Ctrl-C, so a trial that reported and was cut off (or
    left paused) is interrupted. Why not "every trial of the sweep ended": on a Ctrl-C Tune
    saves the running trials as unfinished, then terminates them, so the sweep's trials all read
    TERMINATED and a trial running during its last generations was labelled stopped early (the
    sweep even exited 0). ``by_generation`` holds what the trial computed, reported or not
    (``computed_by_generation``). A trial that computed nothing and did not fail never started,
    or was cut off first: unfinished.
    """
    if result.error is not None:
        return FAILED
    if len(by_generation) >= plan.generations:
        return "completed"
    if not by_generation:
        return "unfinished"
    return "stopped early" if (result.metrics or {}).get("done") else "interrupted"


def mlflow_status(status: str) -> str:
    """KILLED for a trial stopped early or cut off: MLflow's status for a run ended from outside.

    MLflow's own words (FINISHED, FAILED, KILLED), not a ``RunStatus``: they close the trial's MLflow run.
    """
    return {"completed": "FINISHED", "error": "FAILED"}.get(status, "KILLED")


# How a trial ended (``_status``) in the words of `relay runs`, for its `relay.status` (an open one: INTERRUPTED).
RELAY_STATUS_OF_TRIAL = {"completed": RunStatus.FINISHED, "error": RunStatus.FAILED, "stopped early": RunStatus.STOPPED}


def relay_status(status: str) -> str:
    """The trial's `relay.status`: STOPPED says its scheduler stopped it, INTERRUPTED (as a `relay run`'s ledger
    says after Ctrl-C) that the sweep was, and `relay tune --resume` goes on with it: a trial cut off before
    it computed anything (unfinished) too, which read KILLED."""
    if status in OPEN:
        return RunStatus.INTERRUPTED
    return RELAY_STATUS_OF_TRIAL.get(status) or mlflow_status(status)
