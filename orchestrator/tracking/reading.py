"""Reading a pipeline run's per-generation metrics back out of MLflow (`relay generations`, summaries).

The parent run holds every generation's metrics at step = generation, so one row per
generation is rebuilt from the parent's metric histories alone.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError, RelayError
from orchestrator.tracking.common import (
    TAG_KIND,
    TAG_NAME,
    TAG_PIPELINE,
    TAG_PIPELINE_RUN,
    half_made_store_problem,
    mlflow_client,
    no_database_message,
    sqlite_path,
)


class DeletedRunError(InputError):
    """A pipeline run whose MLflow runs were deleted in MLflow (``mlflow runs delete``); ``ids`` can restore them."""

    def __init__(self, run_id: str, tracking_uri: str, ids: list[str]) -> None:
        self.run_id, self.tracking_uri, self.ids = run_id, tracking_uri, ids
        super().__init__(deleted_message(run_id, tracking_uri, ids))


def deleted_message(run_id: str, tracking_uri: str, ids: list[str], record: str = "", store_flag: str = "") -> str:
    """What to do about a run whose MLflow runs were deleted: restore them (pipeline run first), or delete the rest.

    ``record``: the artifact store that still holds its record, when the caller knows (then ``relay delete``
    removes the rest); ``store_flag`` how ``relay delete`` must name that store (empty where it opens it anyway).
    """
    restore = f"MLFLOW_TRACKING_URI={tracking_uri} mlflow runs restore --run-id"
    if len(ids) == 1:
        command, which = f"{restore} {ids[0]}", "its pipeline run; the runs nested in it were not deleted"
    else:
        command = f"for id in {' '.join(ids)}; do {restore} $id; done"
        which = f"the pipeline run first, then its {len(ids) - 1} deleted generation and stage runs"
    still = f", its record is still in the artifact store {record}" if record else ""
    rest = f"remove the rest of the run with `relay delete {run_id}{store_flag}`" if record else "leave them deleted"
    return (
        f"run {run_id}'s MLflow runs were deleted in MLflow (`mlflow runs delete`){still}; bring them back with "
        f"`{command}` ({which}), or {rest}"
    )


def generation_rows(client: Any, parent_run_id: str) -> list[dict[str, Any]]:
    """Rows like ``{"generation": 0, "evaluate/accuracy": 0.9}`` from the parent's step = generation metrics."""
    rows: dict[int, dict[str, Any]] = {}
    for key in client.get_run(parent_run_id).data.metrics:
        for point in sorted(client.get_metric_history(parent_run_id, key), key=lambda m: m.timestamp):
            rows.setdefault(point.step, {"generation": point.step})[key] = point.value
    return [rows[g] for g in sorted(rows)]


def read_generations(tracking_uri: str, experiment: str, run_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Per-generation rows of the parent run's metrics (latest run when run_id is None).

    Returns (run id, rows) with rows like ``{"generation": 0, "evaluate/accuracy": 0.9}``.
    A sqlite store that does not exist, or holds no MLflow tables, is reported, not created
    (MLflow would make its tables in any file it is given); a missing store, experiment or run
    is the user's input pointing at nothing (InputError). A store that fails while it is read
    is a RelayError naming it, not MLflow's traceback.
    """
    db = sqlite_path(tracking_uri)
    if db is not None:
        check_database(db)
    from mlflow.exceptions import MlflowException

    try:
        return _read(tracking_uri, experiment, run_id)
    except MlflowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RelayError(f"could not read the MLflow tracking store at {tracking_uri}: {first}") from exc


def check_database(db: Path) -> None:
    """InputError unless ``db`` is an SQLite file with MLflow's tables; opened read-only, so nothing is written."""
    if not db.exists():
        raise InputError(no_database_message(db))
    problem = half_made_store_problem(db)
    if problem is not None:
        raise InputError(problem)
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='experiments'")
            tables = found.fetchall()
    except sqlite3.Error as exc:
        raise InputError(
            f"{db} is not an MLflow tracking database ({exc}); move it away, or pass the workspace "
            "whose mlflow.db `relay run` wrote (--workspace, or MLFLOW_TRACKING_URI=sqlite:///PATH)"
        ) from exc
    if not tables:
        raise InputError(
            f"{db} holds no MLflow runs (no experiments table); pass the workspace whose mlflow.db "
            "`relay run` wrote (--workspace, or MLFLOW_TRACKING_URI=sqlite:///PATH)"
        )


def _read(tracking_uri: str, experiment: str, run_id: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The newest pipeline run's (or ``run_id``'s) name and rows; InputError when none matches."""
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise InputError(
            f"no MLflow experiment {experiment!r} at {tracking_uri}; experiments there: {names} (pass --experiment)"
        )
    newest = _pipeline_runs(client, found.experiment_id, run_id, 1)
    if not newest and run_id is not None and (deleted := deleted_run_ids(client, found.experiment_id, run_id)):
        raise DeletedRunError(run_id, tracking_uri, deleted)
    if not newest:
        raise InputError(_no_run_message(client, found.experiment_id, experiment, tracking_uri, run_id))
    return _run_name(newest[0]), generation_rows(client, newest[0].info.run_id)


def recorded_pipeline(tracking_uri: str, experiment: str, run_id: str) -> str | None:
    """The `pipeline:` a run was started with, from its MLflow parent run's params; None when not found there.

    For `relay generations RUN_ID` from a machine that sees only the tracking server: the run's
    record is in the artifact store, but its params name the pipeline, which picks the columns.
    A sqlite store that is not an MLflow database is not read (MLflow would create one there).
    """
    db = sqlite_path(tracking_uri)
    if db is not None:
        try:
            check_database(db)
        except InputError:
            return None
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = _pipeline_runs(client, found.experiment_id, run_id, 1) if found is not None else []
    return pipeline_kind_of(runs[0]) if runs else None


def pipeline_kind_of(run: Any) -> str | None:
    """The `pipeline` param of a pipeline run, else its ``relay.pipeline`` tag where ``relay.name`` shows it is the kind.

    Why the tag: a run whose tracking start was cut short (after its run was made, before its params)
    has its tags alone, and from a machine that sees only the tracking server `relay generations RUN_ID`
    then looked for the run in the artifact store and said there was none. Runs written before
    ``relay.name`` existed hold the config's name in ``relay.pipeline``, not the kind: not read.
    """
    tags = run.data.tags
    return run.data.params.get("pipeline") or (tags.get(TAG_PIPELINE) if TAG_NAME in tags else None)


def _pipeline_runs(client: Any, experiment_id: str, run_id: str | None, count: int) -> list[Any]:
    """The newest ``count`` pipeline runs of the experiment (only ``run_id``'s when given)."""
    query = f"tags.`{TAG_KIND}` = 'pipeline'"
    if run_id is not None:
        query += f" and tags.`{TAG_PIPELINE_RUN}` = '{run_id}'"
    return client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=count)


def deleted_run_ids(client: Any, experiment_id: str, run_id: str) -> list[str]:
    """The MLflow ids of ``run_id``'s deleted runs, the pipeline run's first; [] unless its pipeline run is deleted.

    Why: a run whose MLflow runs were deleted (``mlflow runs delete``) was "no pipeline run", as if
    its id were wrong, while its record still said it ran. Restored in this order, the pipeline run
    comes back before the runs nested under it.
    """
    from mlflow.entities import ViewType

    query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}'"
    found = client.search_runs([experiment_id], query, run_view_type=ViewType.DELETED_ONLY, max_results=1000)
    order = {"pipeline": 0, "generation": 1}
    if not any(run.data.tags.get(TAG_KIND) == "pipeline" for run in found):
        return []
    found = sorted(found, key=lambda run: (order.get(run.data.tags.get(TAG_KIND, ""), 2), run.info.start_time or 0))
    return [run.info.run_id for run in found]


def _no_run_message(client: Any, experiment_id: str, experiment: str, tracking_uri: str, run_id: str | None) -> str:
    if run_id is None:
        return f"no pipeline runs in experiment {experiment!r} at {tracking_uri} yet; run a pipeline first"
    names = ", ".join(_run_name(run) for run in _pipeline_runs(client, experiment_id, None, 10)) or "none yet"
    return f"no pipeline run {run_id!r} in experiment {experiment!r}; its newest runs: {names}"


def _run_name(run: Any) -> str:
    return run.data.tags.get(TAG_PIPELINE_RUN, run.info.run_name)
