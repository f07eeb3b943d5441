"""A run a reader names, found in MLflow: an MLflow run id taken to its Relay run, and a run's generations
with its record in the artifact store explaining an MLflow run that is not there (`relay generations`).

Apart from reading.py, which reads what MLflow holds and knows no artifact store: these readers also
say what the run's record or a sweep's run tells about an id MLflow does not answer for as asked.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, record_path, tracking_lost_at
from orchestrator.errors import ConfigError, InputError, RelayError
from orchestrator.tracking import sweeps
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, mlflow_client, sqlite_path
from orchestrator.tracking.pipeline_run import START
from orchestrator.tracking.reading import DeletedRunError, check_database, deleted_message, read_generations

log = logging.getLogger("relay")  # said as the reading command's own lines, as before they were read here

MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")  # what MLflow names a run by (`relay run` prints it: `open run ...`)
SHORT_ID = 8  # the characters of a run id MLflow's UI shows: a prefix this long or longer names the run, as git's do
MLFLOW_ID_PREFIX = re.compile(rf"[0-9a-f]{{{SHORT_ID},31}}")
MATCHES_NAMED = 5  # the runs an ambiguous prefix could name that its message lists; more are counted
COMMAND_LINE = "the command line"


def readable_client(uri: str) -> Any:
    """An MLflow client of the tracking store ``uri``; None when it cannot be read without writing to it (a SQLite
    file that is no MLflow database yet: MLflow would create its tables in it) or it fails to open."""
    from mlflow.exceptions import MlflowException

    try:
        db = sqlite_path(uri)
        if db is not None:
            check_database(db)
        return mlflow_client(uri)
    except (RelayError, MlflowException) as exc:
        log.debug("no tracking store to ask at %s: %s", uri, exc)
        return None


def relay_run_named(client: Any, given: str, options: str = "") -> str:
    """The Relay run that ``given`` names: itself, or the run an MLflow run id (or a prefix of one) belongs to.

    Asked only for an id no run record in the artifact store has. `relay run` ends with `open run
    <MLflow run id>` for the MLflow UI, and MLflow's UI shows a run id's first 8 characters; either,
    given to `relay generations`, found no run record. An MLflow run of a Relay run (the pipeline's,
    a generation's, a stage's) carries the Relay run id in its `relay.pipeline_run` tag, read here
    from ``client``'s store. A prefix of 8 to 31 hex characters names the runs whose ids start with
    it (``mlflow_run_of``): none, or runs of several Relay runs, is bad input saying so. An MLflow
    run of no Relay run is bad input too; a whole id the store does not know stays as given (the
    caller says the run is not in the artifact store either). A sweep's own run has no generations,
    whether named by its MLflow run id or by the sweep's name (what `relay tune` prints and names its
    trials after): it is bad input that names the sweep's trials to pass instead. ``options``: the
    store options the user gave, repeated in the commands that message shows.
    """
    prefix = MLFLOW_ID_PREFIX.fullmatch(given) is not None and not is_tracked_run(client, given)
    found = mlflow_run_of(client, given, prefix, options)
    if found is None:
        sweep = sweeps.sweep_run_named(client, given)
        if sweep is not None:
            raise ConfigError([sweeps.sweep_run_problem(client, sweep, given, options)], COMMAND_LINE)
        if prefix:
            raise ConfigError([unknown_prefix_problem(client, given, options)], COMMAND_LINE)
        return given
    tags = found.data.tags
    if sweeps.is_sweep_run(tags):  # a sweep's own run has no generations: its trials have
        raise ConfigError([sweeps.sweep_run_problem(client, found, found.info.run_id, options)], COMMAND_LINE)
    relay_run = tags.get(TAG_PIPELINE_RUN)
    if not relay_run:
        raise ConfigError([not_relay_problem(found, given, options)], COMMAND_LINE)
    kind = tags.get(TAG_KIND, "an")
    log.info(
        "MLflow run %s (%s run) belongs to Relay run %s: its generations follow", found.info.run_id, kind, relay_run
    )
    return relay_run


def mlflow_run_of(client: Any, given: str, prefix: bool, options: str) -> Any | None:
    """The MLflow run ``given`` names, in any experiment, deleted ones included (as ``get_run`` finds them);
    None when there is none, or ``given`` is no MLflow run id (nor, ``prefix`` False, a prefix of one).

    A prefix several runs' ids start with names one run when they are all of one Relay run (its
    pipeline run and a generation of it read the same table); else it is bad input listing them.
    """
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    if MLFLOW_RUN_ID.fullmatch(given):
        try:
            return client.get_run(given)
        except MlflowException as exc:  # no such run there: the id stays, not found
            log.debug("%s is not an MLflow run at %s: %s", given, client.tracking_uri, exc)
            return None
    if not prefix:
        return None
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    query = f"attributes.run_id LIKE '{given}%'"  # hex only: no quote, no LIKE wildcard
    found = client.search_runs(experiments, query, run_view_type=ViewType.ALL) if experiments else []
    if len({owner(run) for run in found}) > 1:
        raise ConfigError([ambiguous_prefix_problem(client, given, found, options)], COMMAND_LINE)
    return found[0] if found else None


def is_tracked_run(client: Any, run_id: str) -> bool:
    """Whether some MLflow run of the store is one of Relay run ``run_id`` (a run tracked with no record here):
    such a run's id is its name, though it looks like an MLflow run id's first characters."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}'"
    return bool(experiments) and bool(client.search_runs(experiments, query, max_results=1))


def owner(run: Any) -> str:
    """The Relay run an MLflow run is of; a run of no Relay run (a sweep's, another tool's) is its own."""
    return run.data.tags.get(TAG_PIPELINE_RUN) or run.info.run_id


def unknown_prefix_problem(client: Any, given: str, options: str) -> str:
    return (
        f"run_id: no run {given!r} in the artifact store, and no MLflow run in the tracking store "
        f"{client.tracking_uri} has an id starting with it; pass the Relay run id (`relay runs{options}` lists "
        f"them) or an MLflow run id of the run, whole or its first {SHORT_ID} characters or more (as MLflow's UI "
        "shows it)"
    )


def ambiguous_prefix_problem(client: Any, given: str, found: list[Any], options: str) -> str:
    """Each run the prefix could name, with the ids of its MLflow runs that start with it: one to copy whole."""
    ids: dict[str, list[str]] = {}
    for run in found:
        ids.setdefault(owner(run), []).append(run.info.run_id)
    named = [
        f"Relay run {name} ({', '.join(run_ids)})" if name not in run_ids else f"MLflow run {name}, of no Relay run"
        for name, run_ids in list(ids.items())[:MATCHES_NAMED]
    ]
    more = f" and {len(ids) - MATCHES_NAMED} more" if len(ids) > MATCHES_NAMED else ""
    return (
        f"run_id: {given} starts the ids of MLflow runs of {len(ids)} different runs in the tracking store "
        f"{client.tracking_uri}: {'; '.join(named)}{more}; pass more characters of the MLflow run id (the run's "
        f"page in MLflow's UI shows it whole), or the Relay run id (`relay runs{options}` lists them)"
    )


def not_relay_problem(found: Any, given: str, options: str) -> str:
    return (
        f"run_id: {given} is MLflow run {found.info.run_id} ({found.info.run_name}), which no Relay run made: it "
        f"has no relay.pipeline_run tag, so no generations to show; pass a Relay run id (`relay runs{options}` "
        "lists them) or an MLflow run id of one of its runs"
    )


def read_run_generations(
    store: ArtifactStore, uri: str, experiment: str, run_id: str | None, store_flag: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    """``read_generations``; a run whose MLflow run was never made (the store failed at its start) is said as such,
    and one whose MLflow runs were deleted says that its record is still here.

    Why: such a run is recorded here, finished, and its record (``tracking.json``) says its tracking was
    lost from the start; the reader said only "no pipeline run", as if the run id were wrong, and not
    that `relay resume` fills the MLflow record in. ``store_flag``: how a printed command names ``store``.
    """
    try:
        return read_generations(uri, experiment, run_id)
    except DeletedRunError as exc:
        if store.read_record(record_path(exc.run_id, CONFIG_FILE)) is None:
            raise
        message = deleted_message(exc.run_id, uri, exc.ids, store.uri, store_flag)
        raise InputError(message) from exc
    except InputError as exc:
        if run_id is None or tracking_lost_at(store, run_id) != START:
            raise
        raise InputError(
            f"run {run_id} has no MLflow run in experiment {experiment!r} at {uri}: the tracking store failed at "
            f"the run's start, so nothing of it was tracked (its outputs and ledger are in {store.uri}); once "
            f"the store works again, fill the record in with `relay resume {run_id}{store_flag}` "
            "(completed stages are skipped)"
        ) from exc
