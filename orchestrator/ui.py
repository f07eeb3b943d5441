"""`relay ui`: an MLflow server on 127.0.0.1 over the workspace's store, in light mode.

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
import socket
import subprocess
import sys

from orchestrator.errors import InputError
from orchestrator.tracking.common import no_database_message, sqlite_path

log = logging.getLogger(__name__)


MODEL_TRAINING_VIEW = "workflowType=machine_learning"  # the query that opens MLflow's model-training view


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
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [found.experiment_id], "tags.`relay.kind` = 'pipeline'", max_results=1, order_by=["start_time DESC"]
        )
        if found
        else []
    )
    if not runs:
        where = db.parent if db is not None else "<workspace>"
        raise InputError(
            f"no pipeline runs in {tracking_uri} yet: make one with "
            f"`RELAY_WORKSPACE={where} relay run pipelines/configs/smoke.yaml`"
        )
    return (
        f"http://127.0.0.1:{port}/#/experiments/{found.experiment_id}/runs/{runs[0].info.run_id}?{MODEL_TRAINING_VIEW}"
    )


def check(tracking_uri: str, experiment: str, port: int) -> str:
    """Everything that can be wrong before a server starts; returns the URL of the newest pipeline run."""
    if not 0 < port < 65536:
        raise InputError(f"port {port} is not a TCP port: pass 1-65535, e.g. `relay ui --port 5000`")
    if port_in_use(port):
        raise InputError(f"port {port} on 127.0.0.1 is in use: pick another with `relay ui --port {port + 1}`")
    return latest_run_url(tracking_uri, experiment, port)


def server_command(tracking_uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and environment (shared with the browser test).

    One worker process: a local UI serves one person, and with several, uvicorn's supervisor kills
    a worker that is slow to import MLflow on a busy machine and restarts it, over and over.
    """
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return command, env


def run_server(tracking_uri: str, port: int) -> int:
    """Run `mlflow server` in the foreground until it exits or Ctrl-C."""
    command, env = server_command(tracking_uri, port)
    log.debug("starting %s", " ".join(command))
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
