"""The lines `relay generations` prints under a run's table: the run is not finished (and its way on), or its
MLflow record is incomplete (and how to fill it in).

Apart from the table because they read the run's record, not MLflow: the table shows what MLflow
holds, and only the record knows that the run stopped short, failed in a stage whose own error
says what to do, or lost its tracking store while it ran.
"""

from __future__ import annotations

from orchestrator.cli.common import store_option
from orchestrator.cli.records.run_status import failed_stage, run_status
from orchestrator.cli.records.trials import ended_in_sweep
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RunStatus, record_path, traceback_path, tracking_lost_at

# The errors (class names, as the ledger records a failed stage's) of data that cannot be read: fixing it changes
# the data, which a resume refuses, so the way on is a new run (orchestrator.errors.UnreadableDataError).
UNREADABLE_DATA_ERRORS = ("UnreadableDataError", "UnreadableImageError")
# `init.source` weights changed after the run was planned: its error says both ways on, put them back and resume
# or start a new run for the new ones (orchestrator.errors.ChangedWeightsError).
CHANGED_WEIGHTS_ERROR = "ChangedWeightsError"


def unfinished_note(store: ArtifactStore, run_id: str) -> str | None:
    """A line saying the run is not finished and what to do, or None when it finished (or has no ledger here).

    `relay generations` prints it under a table that then shows only the generations the run got to. A
    trial its sweep's scheduler stopped has nothing left (`relay tune --resume` was named as its way on).
    """
    status = run_status(store, run_id)
    if status in (RunStatus.FINISHED, RunStatus.NOT_STARTED):
        return None
    if status.is_live:
        way_on = "look again when it has finished (`relay runs` shows its progress)"
    elif (ended := ended_in_sweep(store, run_id)) == "stopped early":
        return (
            f"Run {run_id} is a trial its sweep's scheduler stopped early: the table shows the generations it ran, "
            "and nothing is left to run (`relay tune --resume` does not continue a stopped trial)"
        )
    elif ended == "completed":
        return None
    elif store.read_record(record_path(run_id, CONFIG_FILE)) is None:  # a tune trial: its sweep keeps its config
        way_on = "it is a trial of a sweep that was cut off: `relay tune CONFIG --resume` continues the sweep"
    elif status is RunStatus.FAILED and (failure := failed_stage(store, run_id)) is not None:
        way_on = _after_failure(store, run_id, *failure) + traceback_kept(store, run_id, failure[0])
    else:
        way_on = f"finish it with `relay resume {run_id}{store_option(store.uri)}`"
    return f"Run {run_id} is {status}, not finished; {way_on}"


def _after_failure(store: ArtifactStore, run_id: str, stage: str, error: str) -> str:
    """What a FAILED run's note says to do: the failed stage's own error (its advice included), and a resume
    once that cause is fixed.

    Why: the note said "finish it with `relay resume`" of every failed run, also of one whose error
    said to start the run again (its `init.source` weights changed after it was planned), and the
    resume then refused. The error is shown whole, so the two pieces of advice can be read together.
    """
    if error.split(":", 1)[0] in UNREADABLE_DATA_ERRORS:  # as the runner says it (Runner._way_on)
        return (
            f"stage {stage} failed: {error.rstrip('.')}. Once the data is fixed, start a new run (`relay run`): "
            "a resume would refuse the fixed data, since the run's finished stages read it as it was"
        )
    if error.split(":", 1)[0] == CHANGED_WEIGHTS_ERROR:  # its error names both ways on (Runner._way_on too)
        return f"stage {stage} failed: {error.rstrip('.')}"
    return (
        f"stage {stage} failed: {error.rstrip('.')}. Once that cause is fixed, "
        f"`relay resume {run_id}{store_option(store.uri)}` retries it (completed stages are skipped)"
    )


def traceback_kept(store: ArtifactStore, run_id: str, stage: str) -> str:
    """`` (its traceback: LOCATION)`` where the run record keeps the failed stage's traceback, else "".

    Why: the note shows the error's first line only, which does not say where in a stage's body it
    was raised; the run's end said where the whole traceback is, but only on the console it ran on.
    """
    relative = traceback_path(run_id, stage)
    return f" (its traceback: {store.shown(relative)})" if store.read_record(relative) is not None else ""


def tracking_note(store: ArtifactStore, run_id: str) -> str | None:
    """A line saying the run's MLflow record is incomplete and how to fill it in, or None when it is not.

    The run's record says so (``tracking.json``, ledger.write_tracking) when the tracking store stopped
    answering during its last attempt: the MLflow runs from there on are missing or left RUNNING, and
    `relay generations` showed an empty table as if that were the run's result.
    """
    lost_at = tracking_lost_at(store, run_id)
    if lost_at is None:
        return None
    return (
        f"Run {run_id}'s MLflow record is incomplete: the tracking store stopped answering at {lost_at} while it "
        f"ran, so the table shows only what reached it; once the store answers, fill the record in with "
        f"`relay resume {run_id}{store_option(store.uri)}` (completed stages are skipped)"
    )
