"""Fixtures the CLI's bad-input tests share."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

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
