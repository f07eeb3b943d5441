"""A run inside a Ray job ends naming its stores as the user gave them, never a folder of Ray's session.

Before the fix, QA's job (an S3 artifact store and a tracking URI, handed to the job as RELAY_ARTIFACT_URI and
MLFLOW_TRACKING_URI by `relay submit`) ended with `relay ui --workspace .../runtime_resources/working_dir_files/
_ray_pkg_.../relay-workspace` and `relay generations RUN --workspace <the same>`: the stores matched the job's
environment defaults, so the lines named the job's workspace, a folder the user never had. The job here is the
real `relay run` path (its record, the local executor, a real MLflow sqlite store) in a process that looks like a
Ray job's entrypoint: Ray's job variable set, the working folder under runtime_resources.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.cli.run.execution import execute, prepare_run
from orchestrator.cli.run.run_record import save_run_record, with_locations

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")
OVERRIDES = ["run.executor=local", "train.steps=3", "crest.generations=1"]


def test_a_ray_jobs_closing_lines_name_the_stores_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    working_dir = tmp_path / "session_2026-12-06_10-00-00" / "runtime_resources" / "working_dir_files" / "_ray_pkg_d"
    working_dir.mkdir(parents=True)
    monkeypatch.chdir(working_dir)
    store, uri = str(tmp_path / "shared" / "artifacts"), f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    monkeypatch.setenv("RELAY_ARTIFACT_URI", store)  # as `relay submit` hands the stores to its job
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    spec, config = load_pipeline_config(SMOKE, OVERRIDES)
    config = with_locations(config, store, uri)
    run = prepare_run(spec, config, "job-run", None, None)
    save_run_record(run.store, "job-run", config, SMOKE, OVERRIDES)

    execute(run, resume=False)

    out = capsys.readouterr().out
    closing = out[out.index("Browse the generations in MLflow") :]
    assert "runtime_resources" not in closing and "--workspace" not in closing, closing
    assert f"MLFLOW_TRACKING_URI={uri} relay ui" in closing, closing
    assert f"Table again:  relay generations job-run --artifact-uri {store}" in closing, closing
