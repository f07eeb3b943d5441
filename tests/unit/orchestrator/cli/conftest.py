"""Fixtures the CLI's tests share: folders, store settings, and an S3 server (moto's, in this process)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, two levels down so that `../../escaped` stays inside tmp_path."""
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("RELAY_WORKSPACE", raising=False)
    return folder


@pytest.fixture
def no_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's own stores must not decide where a command writes or reads: the test names them."""
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def gone() -> Iterator[str]:
    """``127.0.0.1:PORT`` where no cluster answers: bound, never listened on, held for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in this process, on a free port (about 1 s to start), shared by a module's tests.

    Each test finds it empty: tests/conftest.py resets moto before every test, so make buckets per test (``s3``).
    """
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> pafs.S3FileSystem:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", allow_bucket_creation=True)
