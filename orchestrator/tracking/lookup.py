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
    """The Relay run that ``given`` names: itself, or the run an MLflow run id of it belongs to.

    `relay run` ends with `open run <MLflow run id>` for the MLflow UI, and that id given to `relay
    generations` found no run record. An MLflow run of a Relay run (the pipeline's, a generation's,
    a stage's) carries the Relay run id in its `relay.pipeline_run` tag, read here from ``client``'s
    store; an id it does not know stays as given. A sweep's own run has no generations, whether named
    by its MLflow run id or by the sweep's name (what `relay tune` prints and names its trials after): it
    is bad input that names the sweep's trials to pass instead. ``options``: the store options the user
    gave, repeated in the commands that message shows.
    """
    if not MLFLOW_RUN_ID.fullmatch(given):
        found = sweeps.sweep_run_named(client, given)
        if found is not None:
            raise ConfigError([sweeps.sweep_run_problem(client, found, given, options)], "the command line")
        return given
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_run(given)
    except MlflowException as exc:  # no such run there: the id stays, not found
        log.debug("%s is not an MLflow run at %s: %s", given, client.tracking_uri, exc)
        return given
    tags = found.data.tags
    if sweeps.is_sweep_run(tags):  # a sweep's own run has no generations: its trials have
        raise ConfigError([sweeps.sweep_run_problem(client, found, given, options)], "the command line")
    relay_run = tags.get(TAG_PIPELINE_RUN)
    if not relay_run:
        return given
    kind = tags.get(TAG_KIND, "an")
    log.info("MLflow run %s (%s run) belongs to Relay run %s: its generations follow", given, kind, relay_run)
    return relay_run


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
