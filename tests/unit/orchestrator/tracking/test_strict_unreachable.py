"""With tracking.strict, a store that stopped answering is named unreachable however the connection ended.

Before: the run stopped with "MLflow stage_started failed against URL: <MLflow's error>", and only that error told
a store that was gone from one that refused the call: "Connection refused" for a server killed between two calls,
"('Connection aborted.', ConnectionResetError(104, ...))" for one killed during a call (seen once in CI in
tests/integration/test_tracking_server.py, whose server is SIGKILLed, and whose check knew only the first). The
errors here are real: MLflow's own request function and a plain request, against a port nothing listens on and
against a server that resets each connection.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
import requests
from mlflow.utils.rest_utils import MlflowHostCreds, http_request

from orchestrator.errors import TrackingError
from orchestrator.tracking.common import guarded
from tests.integration.cluster import free_port


@pytest.fixture
def resetting_server() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a server that accepts each connection and resets it (RST, no answer)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(1024)  # the request arrived: reset now, as a server killed mid-call does
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def create_run(uri: str) -> None:
    """One MLflow REST call as the tracker makes it (MLflow's retries: the error reads "Max retries exceeded")."""
    http_request(MlflowHostCreds(uri), "/api/2.0/mlflow/runs/create", "POST", max_retries=1, backoff_factor=0, json={})


def post_once(uri: str) -> None:
    """The same request without retries: a reset reads "('Connection aborted.', ConnectionResetError(...))", the
    shape CI saw."""
    requests.post(f"{uri}/api/2.0/mlflow/runs/create", json={}, timeout=30)


@pytest.mark.parametrize(
    ("ended", "call"),
    [("refused", create_run), ("reset", create_run), ("reset", post_once)],
    ids=["refused", "reset", "reset-once"],
)
def test_a_strict_failure_on_a_store_that_stopped_answering_names_it_unreachable(
    ended: str, call: Callable[[str], None], resetting_server: str
) -> None:
    uri = resetting_server if ended == "reset" else f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError) as raised:
        guarded("stage_started", lambda: call(uri), uri, strict=True)
    said = str(raised.value)
    assert f"MLflow stage_started failed: the tracking store {uri} is unreachable (" in said, said
    assert ("Connection refused" if ended == "refused" else "Connection aborted") in said, said
    assert said.endswith("fix the tracking store or set tracking.strict=false to run without it"), said


def test_a_strict_failure_the_store_answered_is_not_called_unreachable() -> None:
    def refused_by_the_store() -> None:
        raise ValueError("experiment 'relay' is deleted")

    with pytest.raises(TrackingError) as raised:
        guarded("start_pipeline", refused_by_the_store, "http://127.0.0.1:5000", strict=True)
    assert str(raised.value).startswith("MLflow start_pipeline failed against http://127.0.0.1:5000: experiment")
