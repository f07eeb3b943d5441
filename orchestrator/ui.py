"""`relay ui`: an MLflow server on 127.0.0.1 over the workspace's store, in light mode."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

from orchestrator.errors import RelayError

log = logging.getLogger(__name__)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def latest_run_url(tracking_uri: str, experiment: str, port: int) -> str:
    """The URL of the newest pipeline run, or an error that says how to make one."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "tags.`relay.generation` = 'pipeline'", max_results=1, order_by=["start_time DESC"]) if found else []
    if not runs:
        raise RelayError(f"no pipeline runs in {tracking_uri} yet: make one with `relay run pipelines/configs/smoke.yaml`")
    return f"http://127.0.0.1:{port}/#/experiments/{found.experiment_id}/runs/{runs[0].info.run_id}"


def serve(tracking_uri: str, experiment: str, port: int) -> int:
    """Start `mlflow server` (job execution off: two processes instead of ten) until interrupted."""
    if port_in_use(port):
        raise RelayError(f"port {port} on 127.0.0.1 is in use: pick another with `relay ui --port {port + 1}`")
    url = latest_run_url(tracking_uri, experiment, port)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(port)]
    print(f"MLflow UI: {url}  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
