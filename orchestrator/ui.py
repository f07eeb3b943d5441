"""`relay ui`: an MLflow server on 127.0.0.1 over the workspace's store, in light mode.

A store that is a server already (MLFLOW_TRACKING_URI=http://...) is not served again: `mlflow
server` cannot take an http store as its backend (it died with a registry-URI traceback), and
the UI is right there, so `relay ui` prints that server's link to the newest run and exits.

Checks come first (port free, runs exist) so a mistake is one clear line, not
a server that starts and shows an empty page. The server runs with
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: two processes (0.5 GB) instead of ten.

The URL it prints opens MLflow's model-training view: MLflow 3.17's UI takes the view from
the URL's ``workflowType`` (then remembers it), else opens its GenAI view whatever the
experiment is; Relay's experiments also carry the ``mlflow.experimentKind`` tag that says
"model training" (tracking/common.py) for UIs that read it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from orchestrator.config import TRACKING_URI_ENV
from orchestrator.errors import ConfigError, InputError
from orchestrator.tracking.common import mlflow_client, no_database_message, sqlite_path

log = logging.getLogger(__name__)


MODEL_TRAINING_VIEW = "workflowType=machine_learning"  # the query that opens MLflow's model-training view
# MLflow's server imports starlette.middleware.wsgi, which warns that it is deprecated (server_warnings)
STARLETTE_WSGI_WARNING = "ignore:starlette.middleware.wsgi is deprecated:UserWarning"
STOP_GRACE_S = 10.0  # uvicorn drains open connections on SIGTERM; a UI has few, this is ample
ANSWER_WAIT_S = 120.0  # how long the server may take to answer before its address is printed all the same
ANSWER_POLL_S = 0.2


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def latest_run_url(tracking_uri: str, experiment: str, port: int) -> str:
    """The URL of the newest pipeline run, or an error that says how to make one.

    A sqlite store that does not exist yet is reported, not created (an
    MlflowClient would create an empty database as soon as it touched it).
    """
    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        raise InputError(no_database_message(db))
    client, found = _open_experiment(tracking_uri, experiment)
    runs = client.search_runs(
        [found.experiment_id], "tags.`relay.kind` = 'pipeline'", max_results=1, order_by=["start_time DESC"]
    )
    if not runs:
        where = db.parent if db is not None else "<workspace>"
        raise InputError(
            f"no pipeline runs in experiment {experiment!r} at {tracking_uri} yet: make one with "
            f"`RELAY_WORKSPACE={where} relay run pipelines/configs/smoke.yaml`"
        )
    return run_page(ui_base(tracking_uri, port), found.experiment_id, runs[0].info.run_id)


def run_page(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the UI at ``base``, in the model-training view (MODEL_TRAINING_VIEW)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def server_run_page(tracking_uri: str, experiment: str, run_id: str | None) -> str:
    """A run's page in a tracking server's own UI; the server's root when the server cannot say where.

    The root alone opens MLflow's GenAI home, not the run: the link a run prints when it ends.
    """
    base = tracking_uri.rstrip("/")
    try:
        found = mlflow_client(tracking_uri).get_experiment_by_name(experiment) if run_id else None
    except Exception:  # the server went away since: the root is still where to look
        found = None
    return base if found is None or run_id is None else run_page(base, found.experiment_id, run_id)


def is_server(tracking_uri: str) -> bool:
    """Whether the tracking store is an MLflow server (http/https), whose own UI serves it."""
    return tracking_uri.startswith(("http://", "https://"))


def ui_base(tracking_uri: str, port: int) -> str:
    """Where the UI answers: the tracking server itself, else the server `relay ui` starts on ``port``."""
    return tracking_uri.rstrip("/") if is_server(tracking_uri) else f"http://127.0.0.1:{port}"


def store_origin(tracking_uri: str) -> str:
    """Which setting chose the store: $MLFLOW_TRACKING_URI wins over --workspace, so say so when it did."""
    if os.environ.get(TRACKING_URI_ENV) == tracking_uri:
        return f"{tracking_uri} (from ${TRACKING_URI_ENV}, which overrides --workspace)"
    return tracking_uri


def _store_fix(tracking_uri: str) -> str:
    """What to change when the store cannot be opened: the variable that chose it, else the workspace."""
    if os.environ.get(TRACKING_URI_ENV) == tracking_uri:
        return f"point ${TRACKING_URI_ENV} at an MLflow tracking store, or unset it to serve --workspace's"
    return "move that file away, or pass --workspace with the folder Relay tracked its runs in"


def _open_experiment(tracking_uri: str, experiment: str) -> tuple[Any, Any]:
    """An MlflowClient on the store and the experiment; a store MLflow cannot open is bad input (exit 2).

    MLflow meets a file that is no SQLite database, or a scheme it does not know, with a
    traceback; both are a setting pointing at the wrong thing, so they become one message.
    """
    try:
        client = mlflow_client(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        names = [e.name for e in client.search_experiments()] if found is None else []
    except Exception as exc:  # sqlalchemy, MLflow registry and URI errors share no base class
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            [
                f"MLflow cannot open the tracking store {store_origin(tracking_uri)}: {reason}; "
                f"{_store_fix(tracking_uri)}"
            ],
            "the command line",
        ) from exc
    if found is None:
        raise InputError(
            f"no MLflow experiment {experiment!r} at {store_origin(tracking_uri)}; "
            f"experiments there: {', '.join(names) or 'none'} (pass --experiment)"
        )
    return client, found


def check(tracking_uri: str, experiment: str, port: int) -> str:
    """Everything that can be wrong before a server starts; returns the URL of the newest pipeline run.

    For a tracking server nothing is started, so ``port`` is not checked (run_server returns at once).
    """
    if is_server(tracking_uri):
        return latest_run_url(tracking_uri, experiment, port)
    if not 0 < port < 65536:
        raise InputError(f"port {port} is not a TCP port: pass 1-65535, e.g. `relay ui --port 5000`")
    if port_in_use(port):
        raise InputError(f"port {port} on 127.0.0.1 is in use: pick another with `relay ui --port {port + 1}`")
    url = latest_run_url(tracking_uri, experiment, port)
    log.info("serving the tracking store %s", store_origin(tracking_uri))
    return url


def server_command(tracking_uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and environment (shared with the browser test).

    One worker process: a local UI serves one person, and with several, uvicorn's supervisor kills
    a worker that is slow to import MLflow on a busy machine and restarts it, over and over.
    uvicorn logs at WARNING: its INFO lines ("Started server process", "Waiting for application
    startup", each request) followed the URL Relay prints, which is all a user needs. The registry
    store is named (the tracking store, MLflow's own default) so that MLflow does not print
    "Registry store URI not provided" under the URL.
    """
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONWARNINGS": server_warnings()}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--registry-store-uri",  # the same store, as MLflow would take it, without its line saying so
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts",
        "--log-level warning",
    ]
    return command, env


def server_warnings() -> str:
    """$PYTHONWARNINGS for the server: the user's filters, and STARLETTE_WSGI_WARNING ignored.

    MLflow's server imports a Starlette module that warns it is deprecated (a
    StarletteDeprecationWarning, a UserWarning, so shown by default) in both of its processes:
    four lines under the URL that the user can do nothing about. The filter names that one
    message, so any other warning, and every error, still reaches the console.
    """
    given = os.environ.get("PYTHONWARNINGS", "")
    return ",".join(part for part in (given, STARLETTE_WSGI_WARNING) if part)


def run_server(tracking_uri: str, port: int, ready_line: str = "") -> int:
    """Run `mlflow server` until it exits, Ctrl-C or SIGTERM; then stop it and everything it started.

    The server runs in a session of its own: Ctrl-C in the terminal reaches only Relay (not
    uvicorn, whose shutdown would print a 40-line traceback), and Relay ends the server's
    whole process group on the way out. Without that, `kill <relay pid>` left `mlflow
    server` and its uvicorn serving the port, re-parented to PID 1. A tracking server needs no
    second one: its UI is the URL ``check`` returned, so this returns 0 at once.
    ``ready_line`` (the UI's address) is printed once the server answers (``answering``): printed
    before it started, the address was refused for the 5 s or more MLflow takes to start.
    """
    if is_server(tracking_uri):
        log.info("the tracking store %s is an MLflow server: open its UI, nothing to start", tracking_uri)
        return 0
    command, env = server_command(tracking_uri, port)
    log.debug("starting %s", " ".join(command))
    server = subprocess.Popen(command, env=env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if answering(server, ui_base(tracking_uri, port)) and ready_line:
            print(ready_line, flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_server(server)


def answering(server: subprocess.Popen, base: str, wait_s: float = ANSWER_WAIT_S) -> bool:
    """Whether ``server`` lives once its address answers HTTP, or ``wait_s`` has gone by (a slow start is not a
    failure: its address is printed all the same); False when it exited first (its own output says why)."""
    deadline = time.monotonic() + wait_s
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=ANSWER_POLL_S * 5):
                return True
        except urllib.error.HTTPError:  # an answer all the same
            return True
        except OSError:  # not listening yet
            time.sleep(ANSWER_POLL_S)
    return server.poll() is None


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends `relay ui` the way Ctrl-C does, through run_server's cleanup."""
    raise KeyboardInterrupt


def stop_server(server: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to the server's process group; SIGKILL to what is left of it after ``grace_s``."""
    _signal_group(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(server):
        log.warning("mlflow server did not stop within %.0f s of SIGTERM; killing it", grace_s)
        _signal_group(server.pid, signal.SIGKILL)
    server.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # every process of the group has exited already
        pass


def _group_alive(server: subprocess.Popen) -> bool:
    """Whether any process is left in the server's group (uvicorn can outlive the `mlflow server` that started it).

    The leader is reaped first: an exited but unreaped leader still counts as a group member.
    """
    server.poll()
    try:
        os.killpg(server.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
