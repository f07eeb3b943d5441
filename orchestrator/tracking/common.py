"""What every MLflow writer here shares: the run tree's tags, the failure guard, the experiment.

Tracking is a side channel: a failed MLflow call warns and the work goes on, unless
``strict`` asks for it to stop the run. Pipeline runs (MlflowTracker) and Tune sweeps
(SweepTracker) write to the same experiments under the same rules, so the guard, the
experiment lookup and the tag names live here once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from orchestrator.config import current_directory
from orchestrator.errors import TrackingError

logger = logging.getLogger(__name__)

T = TypeVar("T")

TAG_PIPELINE_RUN = "relay.pipeline_run"
# A run's pipeline kind (`crest`, the config's `pipeline`) and its config's `name` (`smoke`): the meanings
# `relay runs`' pipeline column and Ray job metadata (relay submit) give them. MLflow runs written before
# relay.name existed hold the name in relay.pipeline; nothing finds a run by either tag (relay.pipeline_run does).
TAG_PIPELINE = "relay.pipeline"
TAG_NAME = "relay.name"
TAG_KIND = "relay.kind"
TAG_GENERATION = "relay.generation"
TAG_STAGE = "relay.stage"
TAG_FINGERPRINT = "relay.fingerprint"
TAG_CACHE_HIT = "cache_hit"
TAG_STATUS = "relay.status"
TAG_PARENT = "mlflow.parentRunId"
TAG_SWEEP = "relay.sweep"
# The MLflow UI (3.x) opens an experiment in its model-training view, not the GenAI one, when this
# experiment tag says so; without it the UI guesses, and filed pipeline runs under "Evaluation runs".
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"

CONTINUING = "continuing without it (set tracking.strict=true to stop instead)"


def guarded(op: str, action: Callable[[], T], tracking_uri: str, strict: bool, going_on: str = CONTINUING) -> T | None:
    """Run one tracking action; on failure raise a TrackingError if ``strict``, else warn and return None.

    ``going_on`` ends the warning: what carries on without MLflow (the pipeline, the sweep). A strict
    failure names a store that stopped answering as unreachable, whichever way the connection
    ended: a server killed between two calls refuses the next one, and one killed during a call
    resets it, which read as a different error ("Connection aborted").
    """
    try:
        return action()
    except Exception as exc:
        if strict:
            if is_unreachable(exc):
                failed = f"MLflow {op} failed: the tracking store {tracking_uri} is unreachable ({explained(exc)})"
            else:
                failed = f"MLflow {op} failed against {tracking_uri}: {explained(exc)}"
            raise TrackingError(
                f"{failed}; fix the tracking store or set tracking.strict=false to run without it"
            ) from exc
        logger.warning("MLflow %s failed against %s (%s); %s", op, tracking_uri, explained(exc), going_on)
        return None


@contextlib.contextmanager
def named_step(what: str) -> Iterator[None]:
    """Name ``what`` was being done when the block fails (a TrackingError, the error as its cause).

    Why: a tracking start is a dozen MLflow calls, and its warning said only the error, which may
    name nothing (``[Errno 2] No such file or directory``: os.getcwd() of a deleted directory).
    """
    try:
        yield
    except Exception as exc:
        raise TrackingError(f"{what}: {explained(exc)}") from exc


def explained(error: BaseException) -> str:
    """``error`` as text, with the current directory named when it is what ``error`` failed on and is gone.

    os.getcwd() in a directory deleted under the process raises ENOENT without a path; MLflow
    resolves local paths through it (a sqlite store's artifact root, for one), and Relay's driver
    in a Ray job can lose its directory when Ray unpacks the job's working_dir again.
    """
    text = str(error)
    if not isinstance(error, FileNotFoundError) or error.filename is not None:
        return text
    gone = deleted_cwd()
    if gone is None:
        return text
    return f"{text}: this process's current directory {gone} was deleted, and paths relative to it cannot be resolved"


def deleted_cwd() -> str | None:
    """The path of this process's current directory when it was deleted under it; None while it exists.

    ``current_directory`` says whether it is gone; Linux still names it in /proc, which the error does not.
    """
    if current_directory() is not None:
        return None
    try:
        return os.readlink("/proc/self/cwd").removesuffix(" (deleted)")
    except OSError:  # no /proc (macOS): the directory is gone, its name unknown
        return "(its path unknown)"


# MLflow's own HTTP defaults retry a dead server for about four minutes per call (7 retries,
# backoff 2..128 s, 120 s timeout); a run with a dozen queued calls then hung for most of an hour.
# Relay's client gives up within about half a minute instead. A user's own setting wins.
CLIENT_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # MLflow writes "View run ... / View experiment ..." to stdout on every run it ends against a
    # server; Relay's output is its own (tables, resume commands), so those lines are switched off.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def configure_client_env() -> None:
    """Set CLIENT_ENV_DEFAULTS in this process where the user has not set them (MLflow reads them per request)."""
    for key, value in CLIENT_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def mlflow_client(tracking_uri: str) -> Any:
    """An MlflowClient on ``tracking_uri`` with Relay's client settings (configure_client_env) in place."""
    from mlflow import MlflowClient  # heavy import, only when tracking is used

    configure_client_env()
    return MlflowClient(tracking_uri)


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an inter-process lock on a sqlite store (a ``.lock`` file beside the database); no-op for others.

    Two `relay run` started together on a new workspace both created the schema (MLflow's
    migrations: "table datasets already exists", "duplicate column name") and both created the
    experiment; the loser ran without tracking. Creating the store and the experiment under this
    lock makes the second process find both ready.
    """
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> tuple[Any, str]:
    """A client on the store and the id of experiment ``name`` (ensure_experiment), safe against other processes.

    The store's creation (MLflow creates and migrates a sqlite schema on first touch, which
    get_experiment_by_name is) and the experiment's happen under ``store_lock``.
    """
    import mlflow  # noqa: F401  # seconds of imports, outside the lock: only the store's creation is held up

    with store_lock(tracking_uri):
        db = sqlite_path(tracking_uri)
        if db is not None:
            ensure_sqlite_store(db)
        client = mlflow_client(tracking_uri)
        return client, ensure_experiment(client, name, artifact_location)


CREATING = ".creating-"  # a store being built: mlflow.db.creating-XXXX beside mlflow.db


def ensure_sqlite_store(db: Path) -> None:
    """Create the MLflow store ``db`` atomically when it is missing; refuse one that is half made (TrackingError).

    MLflow builds a new sqlite store in place, through dozens of schema migrations that are not
    one transaction: a run killed then left a half-migrated mlflow.db that every later open failed
    on ("duplicate column name"). The schema is built by MLflow's own store class in a temporary
    file beside ``db`` and linked into place only when complete; a process killed meanwhile leaves
    only that file, removed by the next creation. The link fails if ``db`` appeared meanwhile
    (another process without the lock), so a store that may hold runs is never replaced.
    Call it under ``store_lock``.
    """
    if db.exists():
        roll_back_interrupted_write(db)
        problem = half_made_store_problem(db)
        if problem is not None:
            raise TrackingError(problem)
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_creations(db)
    handle, name = tempfile.mkstemp(prefix=db.name + CREATING, dir=db.parent)
    os.close(handle)
    building = Path(name)
    try:
        _build_schema(building, db)
        with contextlib.suppress(FileExistsError):  # made meanwhile: that store is the one to use
            os.link(building, db)
    finally:
        building.unlink(missing_ok=True)


def _remove_stale_creations(db: Path) -> None:
    """Temporary stores left by creations that were killed; none is in progress while the lock is held."""
    for stale in db.parent.glob(db.name + CREATING + "*"):
        stale.unlink(missing_ok=True)


def _build_schema(building: Path, db: Path) -> None:
    """MLflow's SqlAlchemyStore creates its tables and runs every migration on a new database file."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifact_root = default_artifact_location(f"sqlite:///{db}")
    store = SqlAlchemyStore(f"sqlite:///{building}", artifact_root)
    store.engine.dispose()  # closed, so no journal is left beside it


def half_made_store_problem(db: Path) -> str | None:
    """What is wrong with the existing sqlite store ``db``; None when MLflow can use it. ``db`` is not written.

    A store whose creation was killed (by Relay before stores were created atomically, or by
    another MLflow client) has a schema between two migrations, and perhaps a hot ``-journal``
    that read-only opens fail on ("attempt to write a readonly database"); MLflow then fails
    with "duplicate column name". A hot journal is rolled back in a copy, where it is judged.
    """
    journal = db.with_name(db.name + "-journal")
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            revision, runs = _schema_revision(connection), _run_count(connection)
    except sqlite3.Error:
        if not journal.exists():
            return None  # not a store problem Relay knows: the caller reports what MLflow says about the file
        revision, runs = _rolled_back_copy(db, journal)
        if revision is None:
            return None
    if runs or revision is None:
        # A store holding runs was made whole (MLflow names an older schema itself, with `mlflow db upgrade`),
        # and this check runs before every `relay run`: MLflow's schema head costs an import of 1-1.5 s.
        return None
    head = _mlflow_schema_head()
    if head is None or revision == head:
        return None
    return half_made_message(db, f"its schema stopped at migration {revision}, before MLflow's {head}")


def _rolled_back_copy(db: Path, journal: Path) -> tuple[str | None, int]:
    """The schema revision and run count of ``db`` once its hot journal is rolled back (in a copy: ``db`` stays)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / db.name
        shutil.copyfile(db, copy)
        shutil.copyfile(journal, copy.with_name(journal.name))
        try:
            with closing(sqlite3.connect(copy)) as connection:
                return _schema_revision(connection), _run_count(connection)
        except sqlite3.Error:
            return None, 0


def roll_back_interrupted_write(db: Path) -> None:
    """Open ``db`` read-write once: SQLite rolls back a write a killed process left in its hot journal."""
    with contextlib.suppress(sqlite3.Error), closing(sqlite3.connect(db)) as connection:
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()


def half_made_message(db: Path, why: str) -> str:
    """What to do with a store whose creation never finished: it holds no runs, so a new one replaces it."""
    return (
        f"{db} is a half-made MLflow store ({why}); it holds no runs: move it away "
        f"(mv {db} {db}.broken) and the next `relay run` or `relay resume` in {db.parent} creates a new one"
    )


def _schema_revision(connection: sqlite3.Connection) -> str | None:
    """The alembic migration the store is at; None when it has no alembic_version table."""
    if not _has_table(connection, "alembic_version"):
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _run_count(connection: sqlite3.Connection) -> int:
    return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if _has_table(connection, "runs") else 0


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    found = connection.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return found.fetchone() is not None


def _mlflow_schema_head() -> str | None:
    """The newest schema migration of the installed MLflow; None when MLflow no longer says (the check is skipped).

    MLflow has no public call for it; _get_latest_schema_revision is what its SqlAlchemyStore
    compares a store against (mlflow 3.x).
    """
    try:
        from mlflow.store.db.utils import _get_latest_schema_revision

        return _get_latest_schema_revision()
    except Exception:  # renamed or gone in another MLflow: an unknown head is no reason to refuse a store
        return None


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) when missing; a deleted one is refused.

    A new experiment is marked as model training (TAG_EXPERIMENT_KIND); an existing one gets the
    mark only when it has no kind yet, so a kind chosen in the UI is kept. Another process may
    create it between the lookup and the creation (two runs against one server): its experiment
    is then the one to use.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location, tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING}
            )
        except Exception as exc:
            experiment = _created_meanwhile(client, name, exc)
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"experiment {name!r} is deleted; restore it "
            f"(mlflow experiments restore) or choose another tracking.experiment"
        )
    if TAG_EXPERIMENT_KIND not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
    return experiment.experiment_id


def _created_meanwhile(client: Any, name: str, error: Exception) -> Any:
    """The experiment another process created while this one tried to; ``error`` again when that is not what failed."""
    if getattr(error, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
        raise error
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise error
    return experiment


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the tracking server cannot be reached (refused, reset, timed out), not that it refused a call.

    MLflow wraps the requests/urllib3 error into an MlflowException whose message is all that is
    left of it ("API request to ... failed with exception HTTPConnectionPool(...): Max retries
    exceeded ..."), so the message is read as well as the chain of causes.
    """
    import requests

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError, requests.exceptions.ConnectionError, requests.Timeout)):
            return True
        text = str(seen)
        if "Max retries exceeded" in text or "Connection refused" in text or "timed out" in text.lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def log_params(client: Any, run: str, params: Mapping[str, Any]) -> None:
    """Params as text in one call: MlflowClient.log_batch splits them into the batches the store accepts
    and cuts over-long values (with a warning); keys are cut here, where MLflow would refuse them."""
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH

    client.log_batch(run, params=[Param(k[:MAX_ENTITY_KEY_LENGTH], str(v)) for k, v in params.items()])


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file behind a sqlite:/// URI (None for other stores)."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def no_database_message(db: Path) -> str:
    """What `relay ui` and `relay generations` say about a workspace without a tracking database, and what to do."""
    return (
        f"no runs yet: there is no tracking database at {db}; make one with "
        f"`RELAY_WORKSPACE={db.parent} relay run pipelines/configs/smoke.yaml`, or pass --workspace"
    )


ARTIFACTS_FOLDER = "mlartifacts"  # the folder beside a sqlite store where Relay keeps its experiments' artifacts


def default_artifact_location(tracking_uri: str) -> str | None:
    """Keep a sqlite store's artifacts beside its database instead of in ./mlruns of whatever cwd."""
    db = sqlite_path(tracking_uri)
    return (db.parent.resolve() / ARTIFACTS_FOLDER).as_uri() if db is not None else None


def relocated_artifacts(db: Path, experiment: str) -> Path | None:
    """The folder outside ``db``'s own where experiment ``experiment`` keeps its artifacts, when ``db`` was moved
    or copied there from another folder; None otherwise (also: no such store or experiment, a location the
    user chose). ``db`` is only read.

    Why: an experiment's artifact location is an absolute path in the store, fixed when Relay created it
    beside the database (``default_artifact_location``), and MLflow's client has no call that changes it;
    every new run of the experiment in a moved or copied store wrote its plots, config and checkpoints into
    the old folder (created again where it had moved away). The location is read with a read-only query of
    MLflow's ``experiments`` table, as ``half_made_store_problem`` reads the schema: importing MLflow costs seconds,
    and opening the store through it may migrate it.
    """
    location = _experiment_artifact_location(db, experiment)
    if location is None or not location.startswith("file://"):
        return None
    folder = Path(unquote(urlparse(location).path))
    if folder.name != ARTIFACTS_FOLDER:  # not the location Relay gives its experiments: the user's own choice
        return None
    here = db.parent.resolve()
    if folder.parent == here or (folder.parent.exists() and os.path.samefile(folder.parent, here)):
        return None
    return folder


def _experiment_artifact_location(db: Path, experiment: str) -> str | None:
    """The artifact location the store ``db`` has for ``experiment``; None without one (or without the store)."""
    if not db.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            if not _has_table(connection, "experiments"):
                return None
            row = connection.execute(
                "SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)
            ).fetchone()
    except sqlite3.Error:  # not a store Relay can read: the checks of the store itself say so
        return None
    return row[0] if row and isinstance(row[0], str) else None
