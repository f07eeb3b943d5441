"""relay.run and relay.resume give the caller's environment back: each variable Relay set is as the call found it.

QA's notebook kept MLflow's client settings Relay sets for its runs (MLFLOW_HTTP_REQUEST_TIMEOUT=20, its retries,
MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT) after relay.run returned, so the user's own MLflow client gave up after
20 s. Here the run is real (its stages in this process, ``run.executor=local``; Ray's own variables, such as
PYTHONBREAKPOINT, are tests/integration/test_python_api_environment.py's), and a value the user had set is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cli import api
from orchestrator.tracking.common import CLIENT_ENV_DEFAULTS

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
LOCAL = ["run.executor=local", "train.steps=3", "crest.generations=1", "tracking.system_metrics=false"]


def test_run_and_resume_leave_the_environment_as_they_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_store_settings: None
) -> None:
    for name in CLIENT_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # the user's own: Relay's default does not replace it
    before = dict(os.environ)
    stopped = api.run(SMOKE, LOCAL, workspace=tmp_path / "ws", stop_after="g00/train")
    assert dict(os.environ) == before
    assert api.resume(stopped.run_id, tmp_path / "ws").status == "FINISHED"
    assert api.generations(stopped.run_id, tmp_path / "ws")  # a reader that opens MLflow's client too
    assert dict(os.environ) == before


def test_the_environment_is_given_back_when_a_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_store_settings: None
) -> None:
    before = dict(os.environ)
    with pytest.raises(api.InputError):
        api.run(SMOKE, [*LOCAL, "train.stepz=3"], workspace=tmp_path / "ws")
    assert dict(os.environ) == before
