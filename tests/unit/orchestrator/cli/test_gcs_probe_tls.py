"""The GCS probe before a join speaks plain gRPC, so a cluster on TLS (RAY_USE_TLS) is not probed: the probe would
take its GCS for another server and refuse a cluster Ray itself joins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from orchestrator.cli.run.cluster_join import ray_cluster_problem


@pytest.fixture
def http_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_that_is_not_a_gcs_is_refused_on_a_plain_cluster(http_server: str, monkeypatch) -> None:
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    assert "is not a Ray cluster's GCS address" in (ray_cluster_problem(http_server, "--address") or "")


def test_with_tls_the_probe_is_left_to_ray(http_server: str, monkeypatch) -> None:
    monkeypatch.setenv("RAY_USE_TLS", "1")
    assert ray_cluster_problem(http_server, "--address") is None
