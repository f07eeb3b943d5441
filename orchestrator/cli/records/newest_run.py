"""Which MLflow experiment and tracking store a reader given no run id shows (`relay generations`, `relay ui`),
and what it says when the store it reads has no record yet of the run it would show.

Apart from the listing, which needs no tracking store: here the readers' two sources meet, the
artifact store's run records (what `relay runs` lists first) and the tracking store MLflow reads,
so that the run they show is the one `relay runs` lists first, or a line says why not.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NamedTuple

from orchestrator.cli.common import pipelines_of, store_of, store_option
from orchestrator.cli.preflight import tracking_uri_problem
from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.records.runs import RunRow, run_rows
from orchestrator.cli.records.trials import tracking_settings
from orchestrator.cli.run.run_locations import tracking_problem
from orchestrator.cli.run.run_record import tracked_in_this_workspace
from orchestrator.config import TRACKING_URI_ENV, RunSettings, TrackingSettings, resolve_workspace, tracking_uri
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RunStatus
from orchestrator.errors import InputError, RelayError
from orchestrator.tracking.common import sqlite_path
from orchestrator.tracking.pipeline_run import START


class DefaultExperiment(NamedTuple):
    """The MLflow experiment a reader given neither a run id nor `--experiment` reads (`relay generations`,
    `relay ui`), and, when it is only the default one, a line saying so and how to read another.

    ``tracking_uri``: the newest run's own tracking store, which its record names, to read in place of the
    default one (None: the default one); ``tracking_key`` names that setting in messages about it.
    """

    name: str
    note: str | None = None
    tracking_uri: str | None = None
    tracking_key: str = ""


def newest_run_experiment(args: argparse.Namespace) -> DefaultExperiment:
    """The experiment of the newest run `relay runs` lists, and its tracking store when that is not the default
    one (the one the readers read without a run id: $MLFLOW_TRACKING_URI, else the workspace's).

    Why: the readers showed the newest run of the `relay` experiment, so after a run with
    `tracking.experiment=NAME` they showed an older run than `relay runs` lists first, and said
    nothing. Its experiment is in its record's config (a Tune trial's: its sweep's); when the newest
    run cannot be read, the default experiment is read, and the note says so. A newest run tracked
    elsewhere (a tracking server its config names) is read there, as `relay generations RUN_ID`
    reads it: a second machine with no tracking database of its own said "no runs yet" while `relay
    runs` listed the run. Not when the user named the store to read ($MLFLOW_TRACKING_URI), nor when
    that run's store cannot be read from here while the default one can: the default one is read then,
    and the note says why.
    """
    default = TrackingSettings().experiment
    tracking_store = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    try:
        store = store_of(args)
        sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
        rows = run_rows(store, pipelines_of(args), sweeps)
    except RelayError as exc:  # the reader says what is wrong with the store, if it needs it
        return DefaultExperiment(default, _default_experiment_note(default, f"the run records cannot be read: {exc}"))
    if not rows:  # nothing `relay runs` would list to contradict (a laptop reading the team's tracking server)
        return DefaultExperiment(default)
    newest = rows[0].run_id
    tracking = tracking_settings(store, sweeps, newest)
    if tracking is None:
        why = f"the config of {newest}, the newest run `relay runs` lists, cannot be read"
        return DefaultExperiment(default, _default_experiment_note(default, why))
    experiment = str(tracking.get("experiment") or default)
    recorded = str(tracking.get("uri") or tracking_store)
    if recorded == tracking_store or tracked_in_this_workspace(store, newest, tracking_store):
        return DefaultExperiment(experiment, untracked_newest_note(store, rows[0]))
    return _tracked_elsewhere(store, rows[0], experiment, recorded, tracking_store)


def _tracked_elsewhere(
    store: ArtifactStore, newest: RunRow, experiment: str, recorded: str, tracking_store: str
) -> DefaultExperiment:
    """The experiment to read when the newest run was tracked in ``recorded``, not in the default store
    ``tracking_store``: ``recorded``'s, unless the user named the store to read, or ``recorded`` cannot be read
    here while the default one can (the default one then, with a note saying why); neither: refused."""
    default = TrackingSettings().experiment
    why = f"{newest.run_id}, the newest run `relay runs` lists, was tracked in {recorded}"
    if os.environ.get(TRACKING_URI_ENV):  # the user named the store to read
        return DefaultExperiment(default, _default_experiment_note(default, why))
    problem = unreadable_store_problem(recorded)
    if problem is None:
        key = f"tracking.uri (in run {newest.run_id}'s record, the newest `relay runs` lists)"
        return DefaultExperiment(experiment, untracked_newest_note(store, newest), recorded, key)
    why = f"{why}, which cannot be read here ({problem})"
    if unreadable_store_problem(tracking_store) is not None:  # neither can be read: the newest run's is the one meant
        raise InputError(
            f"{why}; once it can, it is read there, or name the tracking store to read (${TRACKING_URI_ENV}=URI)"
        )
    return DefaultExperiment(default, _default_experiment_note(default, why))


def unreadable_store_problem(uri: str) -> str | None:
    """Why the tracking store ``uri`` cannot be read from here, None when it can: a form MLflow has no store for,
    a SQLite database that is not on this machine (or no database), a server that does not answer."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return f"there is no tracking database {db} on this machine"
    return tracking_uri_problem(uri, "tracking.uri", writes=False) or tracking_problem(uri)


def untracked_newest_note(store: ArtifactStore, newest: RunRow) -> str | None:
    """A line saying the newest run `relay runs` lists is not the run shown, as it has no MLflow run; None when it has.

    Why: `relay generations` without a run id shows the newest run MLflow has; when the newest run's tracking
    store failed at its start (its record says so: ``tracking.json``), that is an older run, shown without a word.
    """
    if newest.tracking_lost_at != START:
        return None
    return (
        f"The newest run `relay runs` lists, {newest.run_id} ({newest.status}), is not the one shown: its tracking "
        f"store failed at the run's start, so it has no MLflow run; `relay generations {newest.run_id}"
        f"{store_option(store.uri)}` says more, and `relay resume {newest.run_id}{store_option(store.uri)}` "
        "fills its record in once the store works"
    )


def _default_experiment_note(experiment: str, why: str) -> str:
    return (
        f"The newest run of MLflow experiment {experiment!r} is shown ({why}); "
        "for another experiment's, pass --experiment NAME"
    )


def check_tracked(args: argparse.Namespace, uri: str, run_id: str | None) -> None:
    """InputError (``untracked_run_problem``) when the SQLite store ``uri`` does not exist yet but the run the
    reader would show (``run_id``, else the newest `relay runs` lists) is recorded here and tracked to it."""
    db = sqlite_path(uri)
    if db is None or db.exists():
        return
    try:
        store = store_of(args)
        sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
        if run_id is None:
            rows = run_rows(store, pipelines_of(args), sweeps)
            run_id = rows[0].run_id if rows else None
        tracking = None if run_id is None else tracking_settings(store, sweeps, run_id)
    except RelayError:  # the reader says what is wrong with the store, if it needs it
        return
    recorded = sqlite_path(str((tracking or {}).get("uri") or ""))
    if run_id is not None and recorded is not None and recorded.absolute() == db.absolute():
        raise InputError(untracked_run_problem(store, run_id, db))


def untracked_run_problem(store: ArtifactStore, run_id: str, db: Path) -> str:
    """What `relay generations` / `relay ui` say when run ``run_id`` is recorded here but its tracking database
    ``db`` does not exist yet: the run stopped (or is still starting) before MLflow recorded anything.

    Why: they said "no runs yet" and advised a new `relay run`, while `relay runs` listed the run and
    `relay resume` would finish it and record it in MLflow.
    """
    status = run_status(store, run_id)
    if status is RunStatus.FINISHED:  # it had one: deleted, or moved without the workspace
        return (
            f"run {run_id} finished, but its tracking database {db} is not there (moved or deleted?); pass the "
            "workspace that holds it (--workspace) or MLFLOW_TRACKING_URI=sqlite:///PATH"
        )
    if status.is_live:
        way_on = "look again once its stages run (`relay runs` shows its progress)"
    else:
        way_on = f"`relay resume {run_id}{store_option(store.uri)}` finishes it and records it in MLflow"
    return f"run {run_id} ({status}) has no MLflow records yet: there is no tracking database at {db}; {way_on}"
