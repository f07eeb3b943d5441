"""Where a run writes, checked before it writes: its stores answer, and a cluster run's results outlive the cluster.

A run writes to two places, the artifact store (stage outputs and the run record) and the
tracking store (MLflow). Both are resolved from settings (``run.artifact_uri``,
``tracking.uri``), the environment (RELAY_ARTIFACT_URI, MLFLOW_TRACKING_URI) or, by default,
the workspace (``run.workspace``, RELAY_WORKSPACE, ./relay-workspace). Two checks:

- Reachable: a remote store (``s3://...``) answers and its bucket exists; a tracking server
  (``http://...``) answers. A wrong setting is found here, not after the first stage.
- Joinable: the Ray cluster a driver joins (``--address``, ``run.ray_address``, RAY_ADDRESS) is
  HOST:PORT and something listens there; ray.init would otherwise retry for minutes.
- Durable (`relay submit`, and `relay run`/`relay resume` inside a Ray job): nothing a user
  needs afterwards may land in a temporary folder or in Ray's per-session folders. A job runs
  in its uploaded working folder under Ray's session folder, so a relative workspace (the
  default) puts every result where Ray deletes it with the cluster; /tmp is node-local and
  cleared on reboot, and other temporary folders (/var/tmp, $TMPDIR) are node-local and may be
  cleaned by the system. A path is checked as written and as it resolves through symlinks.

Every problem is a ``key: what; fix`` line of one ConfigError (exit 2).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator import jobs
from orchestrator.cli import temporary
from orchestrator.cli.preflight import artifact_uri_problem
from orchestrator.config import (
    ARTIFACT_URI_ENV,
    DEFAULT_WORKSPACE,
    RAY_ADDRESS_WORDS,
    TRACKING_URI_ENV,
    WORKSPACE_ENV,
    RunSettings,
    artifact_uri,
    current_directory,
    ray_address_problem,
    tracking_uri,
)
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import StoreFault, store_failure, store_fault
from orchestrator.engine.fit import local_fit_problems, local_gpus
from orchestrator.errors import ConfigError
from orchestrator.jobs.auth import token_mode_for_joining
from orchestrator.tracking.common import relocated_artifacts, sqlite_path

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 20.0
GCS_PROBE_TIMEOUT_S = 10.0  # a GCS answers its first call in milliseconds; a loaded head, in seconds
TOKEN_REJECTED = (
    "it rejected the token; set RAY_AUTH_TOKEN to the cluster's token (on the head node: `ray get-auth-token`), "
    "or replace ~/.ray/auth_token / $RAY_AUTH_TOKEN_PATH with the head's copy"
)
TOKEN_MISSING_START = "it requires a token and none was found"
TOKEN_MISSING = (
    f"{TOKEN_MISSING_START}; set RAY_AUTH_TOKEN=<token> (on the head node: `ray get-auth-token`), "
    "or copy the head's ~/.ray/auth_token to this machine and set RAY_AUTH_MODE=token"
)
NOT_GCS = {  # what a gRPC status of the probe says about the server ({} is the probe's timeout)
    "UNAVAILABLE": "it does not speak gRPC (an HTTP server, such as a Ray dashboard?)",
    "UNIMPLEMENTED": "it is a gRPC server without Ray's GCS service (a raylet's or Ray Client's port?)",
    "DEADLINE_EXCEEDED": "it did not answer as Ray's GCS within {:g} s",
}
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for the entrypoint it starts
SHARED_EXAMPLE = "/mnt/relay"
STORE_FIX = (
    f"set RELAY_WORKSPACE to a folder every node mounts (e.g. {SHARED_EXAMPLE}), or "
    "run.artifact_uri=s3://BUCKET/PREFIX (or RELAY_ARTIFACT_URI)"
)
TRACKING_FIX = (
    f"set tracking.uri=http://MLFLOW-SERVER:5000 (or {TRACKING_URI_ENV}), or RELAY_WORKSPACE to a folder "
    f"every node mounts (e.g. {SHARED_EXAMPLE})"
)


WORKSPACE_KEYS = ("run.workspace", "--workspace", f"${WORKSPACE_ENV}")  # the settings that name a workspace


@dataclass(frozen=True)
class Locations:
    """Where a run writes: the artifact store root (run records included) and the MLflow tracking URI.

    ``store_key`` / ``tracking_key``: the setting that chose each (a store inside a workspace: the one that named
    the workspace, such as ``--workspace``), so that a refusal names what the user set.
    """

    store: str
    tracking: str | None  # None: not known here (a run record on a mount this machine does not see)
    store_key: str = "run.artifact_uri"
    tracking_key: str = "tracking.uri"
    experiment: str | None = None  # the MLflow experiment it tracks into; None: not checked (``moved_store_problem``)


def in_ray_job() -> bool:
    """True in the entrypoint of a Ray job (Ray sets the job's config variable, and the working folder
    is an upload under the session folder)."""
    working = current_directory()  # None in a deleted folder, which is no job's working folder
    return RAY_JOB_ENV in os.environ or (working is not None and "runtime_resources" in working.parts)


def resolved_locations(config: Any) -> Locations:
    """Where this process will write, paths made absolute here, with the setting that chose each store.

    A store named by RELAY_ARTIFACT_URI or MLFLOW_TRACKING_URI is keyed by that variable, so that a
    refusal names what the user set; a store in the workspace keeps the config's key, as before.
    """
    tracking = tracking_uri(config.run, config.tracking)
    store_key = env_key(config.run.artifact_uri, ARTIFACT_URI_ENV, "run.artifact_uri")
    tracking_key = env_key(config.tracking.uri, TRACKING_URI_ENV, "tracking.uri")
    return Locations(artifact_uri(config.run), tracking, store_key, tracking_key, config.tracking.experiment)


def env_key(setting: str | None, variable: str, key: str) -> str:
    """``$VARIABLE`` when the environment variable, not the config's ``key``, names a store; else ``key``."""
    return f"${variable}" if not setting and os.environ.get(variable) else key


def submitted_locations(config: Any, flags: Mapping[str, str] | None = None) -> Locations:
    """Where a job will write, as this shell's settings say, relative paths left relative, with the setting that
    chose each.

    A relative path is resolved on the cluster, inside the job's working folder: it cannot be
    made absolute here. ``flags``: `relay submit`'s --workspace / --artifact-uri, as the
    variables the job gets (RELAY_WORKSPACE, RELAY_ARTIFACT_URI): below the config, above this shell.
    """
    flags = flags or {}
    workspace, workspace_key = _first_given(
        [
            (config.run.workspace, "run.workspace"),
            (flags.get(WORKSPACE_ENV), "--workspace"),
            (os.environ.get(WORKSPACE_ENV), f"${WORKSPACE_ENV}"),
        ],
        (DEFAULT_WORKSPACE, None),
    )
    store, store_key = _first_given(
        [
            (config.run.artifact_uri, "run.artifact_uri"),
            (flags.get(ARTIFACT_URI_ENV), "--artifact-uri"),
            (os.environ.get(ARTIFACT_URI_ENV), f"${ARTIFACT_URI_ENV}"),
        ],
        (f"{workspace}/artifacts", workspace_key or "run.artifact_uri"),
    )
    tracking, tracking_key = _first_given(
        [(config.tracking.uri, "tracking.uri"), (os.environ.get(TRACKING_URI_ENV), f"${TRACKING_URI_ENV}")],
        (f"sqlite:///{workspace}/mlflow.db", workspace_key or "tracking.uri"),
    )
    return Locations(store, tracking, store_key or "run.artifact_uri", tracking_key or "tracking.uri")


def _first_given(settings: list[tuple[str | None, str]], default: tuple[str, str | None]) -> tuple[str, str | None]:
    """(value, key) of the first setting given, in the order they rank; ``default`` when none is."""
    return next(((value, key) for value, key in settings if value), default)


def local_path(uri: str) -> str | None:
    """The filesystem path behind a store or tracking URI, None for a remote one (s3://, http://)."""
    for prefix in ("sqlite:///", "file://"):
        if uri.startswith(prefix):
            return uri[len(prefix) :]
    return None if "://" in uri or uri == "databricks" else uri


def _temp_roots() -> list[str]:
    """The temporary folders the checks below refuse: this machine's (``temporary.temp_roots``).

    Looked up here, apart from the check, so that tests can let pytest's folders (under /tmp) stand
    for a mount every node sees in the durability checks alone.
    """
    return temporary.temp_roots()


def impermanence(path: str) -> str | None:
    """Why results at ``path`` would not outlive the run's cluster, or None when they would.

    The check is ``temporary.impermanence`` (``preflight`` asks it too): a relative path, Ray's
    per-session folders, the temporary folders, each as written and through symlinks.
    """
    return temporary.impermanence(path, _temp_roots())


def store_fix(key: str) -> str:
    """How to put the artifact store where it outlives the cluster, naming ``key``, the setting that chose it."""
    if key in WORKSPACE_KEYS:
        return (
            f"point {key} at a folder every node mounts (e.g. {SHARED_EXAMPLE}), or set "
            f"run.artifact_uri=s3://BUCKET/PREFIX (or {ARTIFACT_URI_ENV})"
        )
    if key == "run.artifact_uri":
        return STORE_FIX
    return f"point {key} at s3://BUCKET/PREFIX or at a folder every node mounts (e.g. {SHARED_EXAMPLE}/artifacts)"


def tracking_fix(key: str) -> str:
    """How to put the tracking store where it outlives the cluster, naming ``key``, the setting that chose it."""
    if key in WORKSPACE_KEYS:
        return (
            f"set tracking.uri=http://MLFLOW-SERVER:5000 (or {TRACKING_URI_ENV}), or point {key} at a folder "
            f"every node mounts (e.g. {SHARED_EXAMPLE})"
        )
    if key == "tracking.uri":
        return TRACKING_FIX
    return (
        f"point {key} at an MLflow server (http://MLFLOW-SERVER:5000) or at a database in a folder every node "
        f"mounts (sqlite:///{SHARED_EXAMPLE}/mlflow.db)"
    )


def durability_problems(locations: Locations) -> list[str]:
    """One line per store that would land in a temporary or per-session folder, with the setting to change."""
    problems = []
    checks = (
        (
            locations.store_key,
            "artifact store (stage outputs, run records)",
            locations.store,
            store_fix(locations.store_key),
        ),
        (locations.tracking_key, "MLflow tracking store", locations.tracking, tracking_fix(locations.tracking_key)),
    )
    for key, what, uri, fix in checks:
        if uri is None:
            continue
        path = local_path(uri)
        why = None if path is None else impermanence(path)
        if why is not None:
            problems.append(f"{key}: the {what} {uri} would be {why}; {fix}")
    return problems


def check_durable(locations: Locations, source: str | None = None) -> None:
    """Refuse (exit 2) a cluster run whose results would not outlive the cluster."""
    problems = durability_problems(locations)
    if problems:
        raise ConfigError(problems, source)


# --- reachability ------------------------------------------------------------------------------


def _bounded(action: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    """(finished, result or exception) of ``action`` run on a daemon thread for at most ``timeout_s``.

    A daemon thread, so a probe stuck on a firewalled endpoint never keeps the process alive.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(action())
        except Exception as exc:  # reported by the caller, with the setting to fix
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="relay-probe")
    thread.start()
    thread.join(timeout_s)
    return (bool(outcome), outcome[0] if outcome else None)


def store_problem(uri: str, timeout_s: float = PROBE_TIMEOUT_S, key: str = "run.artifact_uri") -> str | None:
    """Why the remote store at ``uri`` cannot be used from here (unknown scheme, refused credentials, no
    answer, no bucket), or None.

    ``key`` is how the user named the store (a setting, a flag or a variable), for the message.
    """
    if local_path(uri) is not None:
        return None
    unknown = artifact_uri_problem(uri, local=False, warn=False)  # a scheme pyarrow does not know, a missing package
    if unknown:
        return unknown
    import pyarrow.fs as pafs

    def bucket_info() -> tuple[str, Any]:
        fs, root = pafs.FileSystem.from_uri(uri)
        bucket = root.split("/", 1)[0]
        return bucket, fs.get_file_info(bucket)

    finished, answer = _bounded(bucket_info, timeout_s)
    if finished and isinstance(answer, Exception) and store_fault(answer) is StoreFault.DENIED:
        return f"{key}: {store_failure(uri, answer)}"
    if not finished or isinstance(answer, Exception):
        detail = f"no answer within {timeout_s:g} s" if not finished else str(answer).splitlines()[0]
        return (
            f"{key}: the store {uri} does not answer from this machine ({detail}); check the endpoint "
            "(AWS_ENDPOINT_URL for an S3-compatible server), the network and the credentials"
        )
    bucket, info = answer
    if info.type == pafs.FileType.NotFound:
        return f"{key}: the bucket {bucket!r} of {uri} does not exist; create it first (e.g. `aws s3 mb s3://{bucket}`)"
    return None


def tracking_problem(uri: str, timeout_s: float = 5.0, key: str = "tracking.uri") -> str | None:
    """Why the MLflow tracking server at an http(s) ``uri`` cannot be used, or None (other stores: None).

    ``key`` is how the user named the server (``tracking.uri`` or $MLFLOW_TRACKING_URI), for the message.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    to_fix = f"tracking.uri / {TRACKING_URI_ENV}" if key == "tracking.uri" else key
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.exceptions.RequestException as exc:
        return (
            f"{key}: no MLflow tracking server answers at {uri} ({type(exc).__name__}); start one "
            f"(mlflow server --host 0.0.0.0 --port 5000) or fix {to_fix}"
        )
    if response.status_code != 200:
        return f"{key}: {uri} answers {response.status_code} at /health, not as an MLflow tracking server; fix {to_fix}"
    return None


def check_reachable(locations: Locations, source: str | None = None) -> None:
    """Refuse (exit 2) a remote store or tracking server that cannot be used, before anything is written."""
    problems = [
        store_problem(locations.store, key=locations.store_key),
        tracking_problem(locations.tracking or "", key=locations.tracking_key),
        moved_store_problem(locations),
    ]
    problems = [problem for problem in problems if problem]
    if problems:
        raise ConfigError(problems, source)


def moved_store_problem(locations: Locations) -> str | None:
    """Why a run must not track into a SQLite store moved or copied from another folder, or None.

    MLflow keeps each experiment's artifact location as an absolute path in the store, and its client
    cannot change it (``tracking.common.relocated_artifacts``): a new run of the experiment in a moved
    workspace wrote its MLflow artifacts (plots, config, model checkpoints) under the old folder,
    creating it again, and in a copy into the original's. So the run is refused before anything is
    written; a new experiment in that store gets a location of its own, beside it.
    """
    db = sqlite_path(locations.tracking or "")
    if db is None or locations.experiment is None:
        return None
    elsewhere = relocated_artifacts(db, locations.experiment)
    if elsewhere is None:
        return None
    old = elsewhere.parent
    copied = (old / db.name).exists()
    back = f"run in the original, {old}" if copied else f"move the workspace back to {old} and run there"
    return (
        f"{locations.tracking_key}: the MLflow store {db} was {'copied' if copied else 'moved'} from {old}, and "
        f"its experiment {locations.experiment!r} keeps its artifacts at {elsewhere} (MLflow stores that path "
        f"absolute), so this run's plots, config and models would be written there, outside {db.parent}. To fix: "
        f"{back}; start the run in a new workspace (RELAY_WORKSPACE=NEW_FOLDER or run.workspace=NEW_FOLDER); "
        "or track into a new experiment of this store (tracking.experiment=NAME)"
    )


# --- the cluster a driver joins ---------------------------------------------------------------


def cluster_to_join(address: str | None, settings: RunSettings) -> tuple[str | None, str]:
    """(address, the setting that named it) of the cluster ray.init will join; (None, "") for a new local one.

    ``--address`` wins; inside a Ray job the job's own cluster (Ray sets RAY_ADDRESS); else
    ``run.ray_address``, else RAY_ADDRESS from the shell.
    """
    if address is not None:
        return address, "--address"
    if in_ray_job():
        return None, ""
    if settings.ray_address is not None:
        return settings.ray_address, "run.ray_address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "$RAY_ADDRESS"
    return None, ""


def joins_cluster(address: str | None, settings: RunSettings) -> bool:
    """Whether a run's driver joins an existing Ray cluster (whose other nodes run stages) instead of starting its own."""
    joined, _ = cluster_to_join(address, settings)
    return settings.executor != "local" and joined not in (None, "local")


def address_to_record(address: str | None, settings: RunSettings) -> str | None:
    """The cluster a new run joins, to keep in its record, when the command named it (``--address``, RAY_ADDRESS).

    Why: `relay resume` read only the config, so a run that joined a cluster through either
    finished on a new local Ray instance of the resuming machine, without a word. None for a
    run that starts its own Ray, names its cluster in the config (``run.ray_address``, which the
    record keeps already) or runs inside a Ray job (`relay submit --resume` finishes it there).
    """
    if in_ray_job() or not joins_cluster(address, settings):
        return None
    joined, key = cluster_to_join(address, settings)
    return joined if key in ("--address", "$RAY_ADDRESS") else None


def _unanswered(address: str, timeout_s: float) -> str | None:
    """Why nothing answers at the HOST:PORT ``address`` (the socket error), or None when something listens."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _gcs_refusal(address: str, timeout_s: float) -> str | None:
    """Why the server at ``address`` is not a Ray GCS that lets this driver in (its gRPC status), or None.

    Why: a port that answers TCP is not yet a cluster. Given a dashboard port or any other server,
    ray.init rewrote the address to the node's IP and retried "Failed to connect to GCS" for good,
    deaf to Ctrl-C and SIGTERM; given the wrong token, it printed Ray's "Failed to get cluster ID"
    lines for 20 s and ended vague. ``jobs.gcs_probe`` tells them apart in milliseconds.
    """
    code = jobs.gcs_probe(address, timeout_s)
    if code == jobs.GCS_ANSWERED:
        return None
    if code == "UNAUTHENTICATED":
        return TOKEN_REJECTED if jobs.find_auth_token() else token_missing()
    return NOT_GCS.get(code, f"it answers, but not as Ray's GCS ({code})").format(timeout_s)


def token_missing() -> str:
    """Why no token was sent: none anywhere (``TOKEN_MISSING``), or the file RAY_AUTH_TOKEN_PATH names is not there."""
    path_problem = jobs.token_path_problem()
    if path_problem is None:
        return TOKEN_MISSING
    return f"{TOKEN_MISSING_START}: {path_problem}; {jobs.TOKEN_PATH_FIX}"


def ray_cluster_problem(address: str, key: str, timeout_s: float = 5.0) -> str | None:
    """Why no Ray cluster can be joined at ``address`` from here (its form, nothing listening, not a GCS, a
    refused token), or None."""
    problem = ray_address_problem(address, key)
    if problem or address in RAY_ADDRESS_WORDS:
        return problem
    reason = _unanswered(address, timeout_s)
    port = address.rpartition(":")[2]
    if reason is None:
        return _not_a_gcs_problem(address, key)
    return (
        f"{key}: no Ray cluster answers at {address} ({reason}); start one there "
        f"(`ray start --head --port {port}`) or fix {key}"
    )


def _not_a_gcs_problem(address: str, key: str) -> str | None:
    """The message for a server at ``address`` that is not a GCS this driver can join, or None.

    A Ray Client address (``ray://``) leads to another gRPC service, so it is not probed, and neither is a
    cluster that speaks TLS (RAY_USE_TLS): the probe's plain channel would take it for another server.
    """
    if address.startswith("ray://") or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return None
    refusal = _gcs_refusal(address, GCS_PROBE_TIMEOUT_S)
    if refusal is None:
        return None
    if refusal == TOKEN_REJECTED or refusal.startswith(TOKEN_MISSING_START):  # the address is right
        return f"{key}: could not join the Ray cluster at {address}: {refusal}"
    return (
        f"{key}: {address} is not a Ray cluster's GCS address: {refusal}. A driver joins a cluster at its GCS "
        f"address, HOST:6379 by default, as `ray status` prints it on the head node (not the dashboard's port "
        f"8265); fix {key}, or run as a Ray job: `relay submit CONFIG --address http://HOST:8265`"
    )


RUN_WAY_ON = (
    "; on an autoscaling cluster that starts larger nodes, run it as a job: `relay submit CONFIG --address "
    "http://HOST:8265 --skip-resource-check`"
)
SWEEP_WAY_ON = (
    "; a sweep's trials run on the nodes the cluster has (`relay submit` would run one run of the base config, not "
    "the sweep): on an autoscaling cluster, start a node that large first (ray up with min_workers >= 1 for its "
    "node type, or scale the KubeRay worker group), then run `relay tune` again"
)


def oversized_worker_problems(
    nodes: list[dict[str, float]] | None, pipeline: Pipeline, sweep: bool = False
) -> list[str]:
    """One line per stage whose one worker no node of a cluster with ``nodes`` can hold (``jobs.oversized_workers``);
    nothing where the nodes could not be read.

    The way on is the command's: a run can go as a job that skips the check on an autoscaling
    cluster; a sweep (``sweep``) cannot, since `relay submit` runs the base config once, so it needs the node up.
    """
    if not nodes:
        return []  # nothing to compare with: ray.init and the executor's own warnings say the rest
    problems = jobs.oversized_workers(jobs.worker_requests(pipeline.stages), nodes)
    way_on = SWEEP_WAY_ON if sweep else RUN_WAY_ON
    return [f"{problem}{way_on}" for problem in problems]


def check_recorded_cluster(address: str, run_id: str, timeout_s: float = 5.0) -> None:
    """Refuse (exit 2) to resume a run on the cluster its record names once nothing answers there.

    The run joined that cluster (``address_to_record``), and `relay resume` without
    ``--address`` joins it again; naming another place is the user's choice, not a silent one.
    """
    reason = None if address in RAY_ADDRESS_WORDS else _unanswered(address, timeout_s)
    if reason is None:
        problem = None if address in RAY_ADDRESS_WORDS else _not_a_gcs_problem(address, "--address")
        if problem:  # something else took the port, or the token changed: joining would hang or fail late
            raise ConfigError([f"{problem} (run {run_id} ran on the Ray cluster at {address})"], "the command line")
        return
    raise ConfigError(
        [
            f"--address: run {run_id} ran on the Ray cluster at {address} (its record says so), and no Ray "
            f"cluster answers there now ({reason}); start that cluster again, or finish the run elsewhere: "
            f"relay resume {run_id} --address HOST:PORT (another cluster) or --address local (a new local "
            "Ray instance on this machine)"
        ],
        "the command line",
    )


LOCAL_RUNS_HERE = (
    "run.executor=local runs every stage in this process, without Ray, so it joins no cluster and takes no address"
)


def local_executor_address_problems(address: str | None, settings: RunSettings) -> list[str]:
    """One line per address a `relay run` with ``run.executor=local`` was given (``--address``, ``run.ray_address``).

    Why: the local executor never starts or joins Ray, so the address was dropped without a word: a
    run meant for a cluster ran on this machine, and an address where nothing answers went unchecked.
    RAY_ADDRESS is not one of them: it is the shell's default for every Ray tool (and Ray's job
    supervisor sets it for each entrypoint), not a request of this command.
    """
    given = [
        ("--address", f"--address {address}", address),
        ("run.ray_address", f"run.ray_address={settings.ray_address}", settings.ray_address),
    ]
    return [
        f"{key}: {LOCAL_RUNS_HERE}; drop {key}, or set run.executor=ray to run the stages on Ray with {setting}"
        for key, setting, value in given
        if settings.executor == "local" and value is not None
    ]


def check_resume_address(address: str | None, settings: RunSettings, run_id: str) -> None:
    """Refuse (exit 2) `relay resume RUN_ID --address ...` of a run recorded with ``run.executor=local``.

    A resume runs the config of the run's record, whose executor it cannot change, so the one fix
    is to drop --address. An address the record holds (``run.ray_address`` of a run started before
    this check) is left alone, as before: the resume cannot drop it.
    """
    if settings.executor != "local" or address is None:
        return
    raise ConfigError(
        [
            f"--address: run {run_id} was started with run.executor=local, which runs every stage in this process, "
            f"without Ray, so it joins no cluster and takes no address; resume it without --address"
        ],
        "the command line",
    )


def check_resume_ray_address(settings: RunSettings, run_id: str, job_address: str | None) -> None:
    """Refuse (exit 2) a resume that would join the cluster of a RAY_ADDRESS holding a dashboard URL, with the
    ways on of a resume: `relay submit --resume` to that cluster, or a new local Ray.

    Only where RAY_ADDRESS decides (no ``--address``, no cluster in the run's record or config, not
    inside a Ray job). ``job_address``: the dashboard the run was submitted to as a cluster job
    ("" for a job whose address was not kept), None for a run that was no job's.

    Why: `relay resume` got the refusal of `relay run` (a new run: `relay submit CONFIG`), after a
    line that said it was resuming on a new local Ray.
    """
    joined, key = cluster_to_join(None, settings)
    if settings.executor == "local" or key != "$RAY_ADDRESS" or not joined.startswith(("http://", "https://")):
        return
    ways_on = (
        f"resume it there as a job with `relay submit --resume {run_id} --address {joined}`, or unset RAY_ADDRESS to "
        "resume it here on a new local Ray instance"
    )
    if job_address is None:
        problem = (
            f"$RAY_ADDRESS: {joined} is a dashboard URL; a driver joins a cluster at its GCS address HOST:6379 (as "
            f"`ray status` prints it). To resume run {run_id} on that cluster, {ways_on}"
        )
    else:
        elsewhere = f" (it was submitted to {job_address})" if job_address and job_address != joined else ""
        problem = (
            f"$RAY_ADDRESS: {joined} is a cluster's dashboard URL, and run {run_id} ran as a cluster job{elsewhere}: "
            f"{ways_on}"
        )
    raise ConfigError([problem], "the command line")


def resume_place(settings: RunSettings) -> str:
    """Where a resume with no cluster of its own (no ``--address``, none recorded) computes, in words for its log."""
    if settings.executor == "local":
        return "here, in this process (run.executor=local)"
    if starts_local_ray(None, settings):
        return "here on a new local Ray"
    joined, key = cluster_to_join(None, settings)
    return f"from here on the Ray cluster at {joined} ({key})"


def starts_local_ray(address: str | None, settings: RunSettings) -> bool:
    """Whether a run's driver starts a new local Ray instance: Ray is used, and no cluster is joined (no
    ``--address``, ``run.ray_address`` or RAY_ADDRESS, or the word ``local`` in one; not inside a Ray job,
    whose driver joins its own)."""
    if settings.executor == "local" or (address is None and in_ray_job()):
        return False
    joined, _ = cluster_to_join(address, settings)
    return joined in (None, "local")  # "local": ray.init starts a new instance even beside a running one


def local_ray_fit_problems(address: str | None, settings: RunSettings, pipeline: Pipeline) -> list[str]:
    """The stages the local Ray instance a run starts could never start (``orchestrator.engine.fit``), sized as
    ray.init sizes it: ``run.num_cpus``, else this machine's CPUs. None where the run starts no such instance.

    Why here: `relay run` refuses these before writing (``check_cluster``) and `relay validate` reports
    the same lines without starting anything; a cluster's size is unknown without joining it, so it is not checked.
    """
    if not starts_local_ray(address, settings):
        return []
    return local_fit_problems(pipeline, settings.num_cpus or os.cpu_count() or 1, local_gpus())


FitCheck = Callable[[Pipeline], list[str]]  # the stages of a pipeline that could never start where a run's Ray is


def _fits_anywhere(pipeline: Pipeline) -> list[str]:
    return []


def fit_check(address: str | None, settings: RunSettings, sweep: bool = False) -> FitCheck:
    """How ``check_cluster`` tells the stages that could never start where this run's stages run: a new local Ray
    instance (``local_fit_problems``) or the nodes of the cluster it joins, read here once (``oversized_worker_problems``).

    Why a function of a pipeline: `relay tune` checks the pipeline of each `resources.*` value its space
    can give against the same Ray (``tune.plan.space_fit_problems``). No Ray, a Ray job's own cluster,
    ``auto`` and a Ray Client address: not known here, so nothing is refused.
    """
    if settings.executor == "local" or (address is None and in_ray_job()):
        return _fits_anywhere
    joined, _ = cluster_to_join(address, settings)
    if joined in (None, "local"):
        cpus, gpus = settings.num_cpus or os.cpu_count() or 1, local_gpus()
        return lambda pipeline: local_fit_problems(pipeline, cpus, gpus)
    if joined in RAY_ADDRESS_WORDS or joined.startswith("ray://"):
        return _fits_anywhere
    nodes = jobs.gcs_node_resources(joined, GCS_PROBE_TIMEOUT_S)
    return lambda pipeline: oversized_worker_problems(nodes, pipeline, sweep)


def check_cluster(
    address: str | None, settings: RunSettings, pipeline: Pipeline, source: str | None = None, sweep: bool = False
) -> FitCheck:
    """Refuse (exit 2) a cluster nobody can join, a stage worker no node of a joined cluster can hold, or stages
    a new local instance could never start; the ``fit_check`` it used, for other pipelines on the same Ray.

    Joining: the address is malformed or nothing listens there. A local instance (no address
    anywhere) never grows, so a stage asking for more CPUs or GPUs than it has, or for a custom
    resource, would wait forever (``orchestrator.engine.fit``). Both before anything is written.
    """
    if settings.executor == "local" or (address is None and in_ray_job()):
        return _fits_anywhere  # no Ray, or the Ray job's own cluster (its driver joins through RAY_ADDRESS)
    joined, key = cluster_to_join(address, settings)
    if joined not in (None, "local"):
        _check_joinable(joined, key, source)
    check = fit_check(address, settings, sweep)  # sweep: `relay tune`, whose way on is not a job
    problems = check(pipeline)
    if problems:
        raise ConfigError(problems, source)
    return check


def _check_joinable(joined: str, key: str, source: str | None) -> None:
    """Refuse (exit 2) a cluster address nobody can join from here; a token cluster sets token mode for joining."""
    problem = ray_cluster_problem(joined, key)
    if problem and key == "$RAY_ADDRESS":
        problem += "; or unset RAY_ADDRESS to run on a new local Ray instance"
    if problem:
        raise ConfigError([problem], "the command line" if key == "--address" else source)
    token_mode_for_joining()  # a token cluster: RAY_AUTH_MODE=token before Ray is imported
