"""Fixtures the orchestrator's unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RELAY_WORKSPACE set to a fresh folder (not yet made), and no other store or cluster setting from the shell."""
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    for name in ("RAY_ADDRESS", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "ws"
