"""The Ray cluster a run's driver joins: which one, whether it can be joined, and the address a run keeps.

A cluster is named by ``--address``, ``run.ray_address`` or RAY_ADDRESS (inside a Ray job, the job's
own). Before ray.init, the address is checked for form, for something listening there, and for
Ray's GCS behind it that lets this driver in (its token): ray.init would otherwise retry for minutes.
A resume joins the cluster its record names, and is refused one it cannot join or an address its
executor cannot take, each with the ways on.

Apart from ``run_locations`` (where a run writes) because it asks the cluster, not the stores; the
fit of a run's stages on the Ray it joins is ``cluster_fit``'s.
"""

from __future__ import annotations

import os
import socket

from orchestrator import jobs
from orchestrator.cli.run.run_locations import in_ray_job
from orchestrator.config import RunSettings
from orchestrator.config.values import RAY_ADDRESS_WORDS, ray_address_problem
from orchestrator.errors import ConfigError

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
