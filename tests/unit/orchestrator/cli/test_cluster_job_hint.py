"""Which runs are told `(a cluster job: relay submit --resume RUN ...)` as their way on (``pipeline.cluster_job``).

A run that joined a cluster (`relay run --address HOST:PORT`) was told so on failure, though it is no job:
`relay resume RUN` rejoins its recorded cluster, and the submit hint lacked the --address it would need.
The records are real (``save_run_record`` and the engine's Ledger in a real store folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.run.execution import PreparedRun, cluster_job
from orchestrator.cli.run.run_record import save_run_record
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, RAY_JOB_ENV
from orchestrator.registry import PipelineSpec


class ToyConfig(PipelineConfig):
    """What a saved run record needs: the pipeline and where it writes."""


SPEC = PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary={})


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_ADDRESS", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE", RAY_JOB_ENV, JOB_ADDRESS_ENV):
        monkeypatch.delenv(name, raising=False)


def prepared(workspace: Path, run_id: str, address: str | None, ray_address: str | None = None) -> PreparedRun:
    """A run recorded in the workspace's store, started with ``--address`` (or ``run.ray_address``)."""
    store = ArtifactStore(str(workspace / "artifacts"))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(workspace), ray_address=ray_address))
    save_run_record(store, run_id, config, "toy.yaml", [], ray_address=address)
    return PreparedRun(SPEC, config, run_id, None, store, None, address=address)


def test_a_run_that_joined_a_cluster_is_not_told_to_resume_as_a_cluster_job(tmp_path: Path) -> None:
    assert not cluster_job(prepared(tmp_path, "k5", "10.0.0.5:6379"))
    assert not cluster_job(prepared(tmp_path, "k6", None, ray_address="10.0.0.5:6379"))


def test_a_run_inside_a_ray_job_is_told_to_resume_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = {"job_submission_id": "s3", "relay.run_id": "s3"}
    monkeypatch.setenv(RAY_JOB_ENV, json.dumps({"runtime_env": {}, "metadata": metadata}))
    monkeypatch.setenv(JOB_ADDRESS_ENV, "http://10.0.0.5:8265")
    assert cluster_job(prepared(tmp_path, "s3", None))
