"""A Relay run's MLflow runs in the tracking store it wrote to: found, with the model versions and aliases it
leaves behind, and marked deleted.

Relay never erases an MLflow run itself: it marks it deleted, which `mlflow runs restore` undoes
and `mlflow gc` makes final. Registered model versions and logged models are left (a run whose
stages were cache hits shares the first run's model and version: identical weights), and so are
the aliases on them, which `relay delete` names: a model loaded by alias would otherwise go on
loading a deleted run's weights unsaid. Apart from the artifact store's side of a deletion because
this side reads the run's config for where it tracked, and talks to MLflow.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cli.common import pipelines_of
from orchestrator.cli.records.trials import trial_record
from orchestrator.cli.records.workspace import check_tracking_store
from orchestrator.cli.run.run_record import moved_workspace, read_run_record
from orchestrator.config import RunSettings, TrackingSettings, resolve_workspace, tracking_uri
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, record_path
from orchestrator.errors import InputError, TrackingError
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, mlflow_client, sqlite_path
from orchestrator.tracking.registrations import TAG_REGISTERED, parsed_entries, recorded_entries

MLFLOW_UNDO = (
    "MLflow runs are marked deleted, not erased: `MLFLOW_TRACKING_URI={uri} mlflow runs restore --run-id ID` brings "
    "one back, and `MLFLOW_TRACKING_URI={uri} mlflow gc` erases the deleted runs and their artifacts for good"
)


@dataclass(frozen=True)
class TrackedRuns:
    """A Relay run's MLflow runs (pipeline, generations, stages) in one tracking store, and the versions it registered."""

    uri: str
    runs: list[tuple[str, str]]  # (MLflow run id, run name)
    registered: list[str]  # `models:/NAME/VERSION (ALIAS)`, from the pipeline run's relay.registered_models tag
    note: str = ""  # why none were looked for (no tracking database here)
    already_deleted: int = 0  # its MLflow runs someone marked deleted before (`mlflow runs delete`)
    aliases: list[str] = field(default_factory=list)  # `NAME@ALIAS (version V)` left on a version this run logged


def tracking_store_of(args: argparse.Namespace, store: ArtifactStore, run_id: str) -> str:
    """The tracking URI the run wrote to: its record's (a Tune trial's: its sweep's), else the default one."""
    pipelines = pipelines_of(args)
    config = None
    try:
        if store.read_record(record_path(run_id, CONFIG_FILE)) is not None:
            config = read_run_record(store, run_id, pipelines)[1]
        else:
            sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
            found = trial_record(sweeps, run_id, pipelines, store)
            config = found[1] if found is not None else None
    except (InputError, OSError):  # a damaged config: the default store, as `relay generations` falls back to
        config = None
    if config is None:
        return tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    moved = moved_workspace(config, store.uri)
    return f"sqlite:///{moved[1] / 'mlflow.db'}" if moved else tracking_uri(config.run, config.tracking)


def tracked_runs(uri: str, run_id: str, key: str, query: str | None = None) -> TrackedRuns:
    """The MLflow runs (not yet deleted) tagged with the Relay run, in every experiment of the store at ``uri``,
    with the model versions it registered and the aliases left on them. ``query``: other runs than the Relay
    run's (a sweep's own run: ``sweep_deletion``), ``run_id`` then naming them in messages.

    The versions are read from the pipeline run's tag even when that run was already deleted in MLflow
    (`mlflow runs delete`): the versions are kept all the same, and the deletion said nothing of them.
    A SQLite store that does not exist holds none, and is not created; a store that cannot be read is
    bad input (``check_tracking_store``), and one that fails while read stops the deletion before anything is removed.
    """
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return TrackedRuns(uri, [], [], note=f"no tracking database at {db}, so no MLflow runs to delete")
    check_tracking_store(uri, key)
    from mlflow.entities import ViewType

    try:
        client = mlflow_client(uri)
        experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        query = query or f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}'"
        found = _search_all(client, experiments, query) if experiments else []
        gone = _search_all(client, experiments, query, ViewType.DELETED_ONLY) if experiments else []
        registered = list(
            dict.fromkeys(
                entry
                for run in found + gone
                if run.data.tags.get(TAG_KIND) == "pipeline"
                for entry in recorded_entries(run.data.tags.get(TAG_REGISTERED, ""))
            )
        )
        own_runs = {run.info.run_id for run in found + gone}
        aliases = aliases_left(client, registered, own_runs)
    except Exception as exc:  # MLflow raises its own and the driver's errors alike
        raise TrackingError(
            f"could not read the MLflow runs of {run_id} from {uri}: {exc}; nothing was deleted; fix the tracking store"
        ) from exc
    runs_found = [(run.info.run_id, run.info.run_name or "") for run in found]
    return TrackedRuns(uri, runs_found, registered, already_deleted=len(gone), aliases=aliases)


def aliases_left(client: Any, registered: list[str], own_runs: set[str]) -> list[str]:
    """``NAME@ALIAS (version V)`` of each alias on a version that one of ``own_runs`` logged: once those runs are
    deleted, the alias still names the version, whose source run is gone (a version this run only reused, of
    another run's identical weights, keeps its source and is left out)."""
    from mlflow.exceptions import MlflowException

    versions = {(name, version) for name, version, _ in parsed_entries(registered)}
    left = []
    for name in sorted({name for name, _ in versions}):
        try:
            model = client.get_registered_model(name)
        except MlflowException:  # the registered model was deleted by hand: no alias is left
            continue
        for alias, version in sorted(model.aliases.items()):
            version = str(version)
            if (name, version) in versions and client.get_model_version(name, version).run_id in own_runs:
                left.append(f"{name}@{alias} (version {version})")
    return left


def _search_all(client: Any, experiments: list[str], query: str, view: Any = None) -> list[Any]:
    """Every run matching ``query`` in ``view`` (default: the active ones), page by page."""
    from mlflow.entities import ViewType

    found: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiments, query, run_view_type=view or ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def delete_tracked(tracked: TrackedRuns) -> None:
    """Mark the runs deleted (MLflow's soft delete: `mlflow runs restore` undoes it, `mlflow gc` erases them)."""
    if not tracked.runs:
        return
    client = mlflow_client(tracked.uri)
    for mlflow_run_id, _ in tracked.runs:
        try:
            client.delete_run(mlflow_run_id)
        except Exception as exc:
            raise TrackingError(f"could not mark MLflow run {mlflow_run_id} deleted in {tracked.uri}: {exc}") from exc


def mlflow_part(tracked: TrackedRuns) -> str:
    """What becomes of the run's MLflow runs, counting those someone deleted in MLflow before."""
    if tracked.note:
        return tracked.note
    said = f"{len(tracked.runs)} MLflow run(s) in {tracked.uri} marked deleted"
    if tracked.already_deleted:
        said += f" ({tracked.already_deleted} more already deleted in MLflow)"
    return said


def aliases_note(tracked: TrackedRuns) -> str:
    """The aliases left on the deleted run's versions, and how to move or drop one.

    Why: a model loaded by alias (``models:/NAME@newest``) went on loading the weights of a run `relay delete`
    had just removed, and nothing said so. The versions are kept (another run may share them), so the
    aliases are left where they are, for the user to move.
    """
    uri = shlex.quote(tracked.uri)
    return (
        f"aliases stay on versions logged by the MLflow runs this deletes: {', '.join(tracked.aliases)}; point one at "
        f"another run's version with `MLFLOW_TRACKING_URI={uri} python -c \"from mlflow import MlflowClient; "
        "MlflowClient().set_registered_model_alias('NAME', 'ALIAS', VERSION)\"` (the MLflow UI's Models page lists "
        "each version's run), or drop it with delete_registered_model_alias('NAME', 'ALIAS')"
    )
