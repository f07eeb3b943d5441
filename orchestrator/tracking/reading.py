"""Reading a pipeline run's per-generation metrics back out of MLflow (`relay generations`, summaries).

The parent run holds every generation's metrics at step = generation, so one row per
generation is rebuilt from the parent's metric histories alone.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import TrackingError
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, sqlite_path


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
    A sqlite store that does not exist is reported, not created.
    """
    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        raise TrackingError(f"no tracking database at {db}; run a pipeline first or pass the right tracking URI")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise TrackingError(f"no MLflow experiment {experiment!r} at {tracking_uri}; experiments there: {names}")
    query = f"tags.`{TAG_KIND}` = 'pipeline'"
    if run_id is not None:
        query += f" and tags.`{TAG_PIPELINE_RUN}` = '{run_id}'"
    runs = client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise TrackingError(
            f"no pipeline run {run_id or ''} in experiment {experiment!r}; list runs with `relay status`"
        )
    parent = runs[0]
    return parent.data.tags.get(TAG_PIPELINE_RUN, parent.info.run_name), generation_rows(client, parent.info.run_id)
