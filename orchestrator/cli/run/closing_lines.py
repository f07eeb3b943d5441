"""The lines a run ends with: its generations from its own manifests, where to browse them, how to finish it.

Apart from running the stages (``execution``): what they print depends only on where the run's stores
are and how it ended, and the Python API reads the same per-generation rows (``summary_rows``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator import ui
from orchestrator.cli.common import store_option
from orchestrator.cli.run import run_locations
from orchestrator.config import RunSettings, TrackingSettings, resolve_workspace, tracking_uri
from orchestrator.tracking.pipeline_run import START, START_CUT_SHORT
from orchestrator.tracking.run_tree import parent_keys


def closing_store_option(store_uri: str) -> str:
    """How the closing lines name the run's artifact store: ``store_option``, and always ``--artifact-uri`` in a Ray job.

    Why: a job gets the user's stores as RELAY_ARTIFACT_URI / MLFLOW_TRACKING_URI (`relay submit`), so a
    store named that way looked like the default, and the lines named the job's workspace instead: a folder
    in Ray's session directory (runtime_resources/.../relay-workspace) that the user never had.
    """
    if run_locations.in_ray_job():
        return f" --artifact-uri {shlex.quote(store_uri)}"
    return store_option(store_uri)


def incomplete_tracking_note(run_id: str, uri: str, lost_at: str, store: str = "") -> str:
    """The lines that replace the browse hint when the tracking store stopped answering during the run, or
    failed at its start (``START``: no MLflow run was made; ``START_CUT_SHORT``: one was, without its config
    and params), as the warning above says."""
    if lost_at in (START, START_CUT_SHORT):
        what = (
            f"the tracking store {uri} failed at the run's start (the warning above says why), so the run has "
            "no MLflow run"
            if lost_at == START
            else f"tracking the run failed part-way through its start with the tracking store {uri} (the warning "
            "above says at what step), so its MLflow run lacks its config and params, and Relay tracked no more of it"
        )
        again = "Once the store works again"
    else:
        what = f"the tracking store {uri} stopped answering at {lost_at}, and Relay stopped calling it"
        again = "Once the store answers again"
    return (
        f"The MLflow record of run {run_id} is incomplete: {what} (the run's outputs and ledger are in its "
        f"artifact store).\n{again}, fill the record in with:  relay resume {run_id}{store}  "
        "(completed stages are skipped)"
    )


def summary_rows(pipeline: Any, manifests: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-generation rows from the run's own manifests: the numbers the parent run gets, without reading MLflow.

    Reading them back (one query per metric key) cost seconds at the end of every run.
    """
    rows: dict[int, dict[str, Any]] = {}
    for stage in pipeline.stages:
        manifest = manifests.get(stage.name)
        placed = parent_keys(stage.name, stage.generation)
        if manifest is None or placed is None:
            continue
        step, prefix = placed
        row = rows.setdefault(step, {"generation": step})
        row.update({f"{prefix}/{key}": value for key, value in manifest.metrics.items()})
    return [rows[g] for g in sorted(rows)]


def print_browse_hint(config: Any, uri: str, parent_run_id: str | None, run_id: str, store: str = "") -> None:
    """Commands that open this run's stores as it was tracked: its server, or `relay ui` on the right store.

    ``store``: how `relay generations` must name the artifact store (``store_option``).
    """
    if uri.startswith(("http://", "https://")):
        page = ui.server_run_page(uri, config.tracking.experiment, parent_run_id)
        print(f"\nBrowse the generations in MLflow: {page} (run {run_id})")
        print(f"Table again:  MLFLOW_TRACKING_URI={uri} relay generations {run_id}{store}")
        return
    workspace = None if run_locations.in_ray_job() else resolve_workspace(config.run)
    named = f" --workspace {shlex.quote(str(workspace))}" if workspace is not None else ""
    print(f"\nBrowse the generations in MLflow:  {ui_command(config, uri, workspace)}")
    print(f"  (or: mlflow ui --backend-store-uri {uri}) and open run {parent_run_id or run_id}")
    print(f"Table again:  relay generations {run_id}{store or named}")


def ui_command(config: Any, uri: str, workspace: Path | None) -> str:
    """`relay ui` for the run's store and experiment: --workspace serves only the workspace's own mlflow.db.

    ``workspace`` is None in a Ray job: its workspace is a folder of the job's working_dir, in Ray's
    session directory, which the user never had (and its driver's directory may be gone, with nothing
    to resolve a relative workspace against); the tracking URI is the store as the user gave it.
    """
    experiment = config.tracking.experiment
    shown = "" if experiment == TrackingSettings().experiment else f" --experiment {shlex.quote(experiment)}"
    if workspace is not None and uri == tracking_uri(RunSettings(workspace=str(workspace)), TrackingSettings()):
        return f"relay ui --workspace {shlex.quote(str(workspace))}{shown}"
    return f"MLFLOW_TRACKING_URI={shlex.quote(uri)} relay ui{shown}"
