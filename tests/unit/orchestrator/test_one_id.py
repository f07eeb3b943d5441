"""One id: the run id is the Ray submission id, the `relay run --run-id` of the job and the MLflow run name."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from orchestrator import jobs
from orchestrator.cli import build_parser
from orchestrator.cli.jobs.run_job import job_metadata
from orchestrator.cli.run.pipeline import cache_flags

ROOT = Path(__file__).resolve().parents[3]


def test_the_job_runs_relay_run_under_the_submitted_id() -> None:
    entrypoint = jobs.pipeline_entrypoint(str(ROOT / "pipelines/configs/smoke.yaml"), ["a.b=1"], str(ROOT), "smoke-1")
    assert shlex.split(entrypoint) == ["relay", "run", "pipelines/configs/smoke.yaml", "a.b=1", "--run-id", "smoke-1"]


def test_a_resume_job_reads_the_run_record_from_the_store() -> None:
    entrypoint = jobs.resume_entrypoint("smoke-1", "s3://bucket/relay")
    assert shlex.split(entrypoint) == ["relay", "resume", "smoke-1", "--artifact-uri", "s3://bucket/relay"]


def test_the_job_carries_the_pipeline_and_the_run_id_as_metadata() -> None:
    assert job_metadata("crest", "smoke", "smoke-1") == {
        "relay.pipeline": "crest",
        "relay.name": "smoke",
        "relay.run_id": "smoke-1",
    }


@pytest.mark.parametrize("flags", [["--rerun-from", "g01/train"], ["--no-cache"], []])
def test_submit_forwards_the_cache_flags_to_the_jobs_relay_run(flags: list[str]) -> None:
    args = build_parser().parse_args(["submit", "smoke.yaml", "--address", "http://h:8265", *flags])
    entrypoint = jobs.pipeline_entrypoint(
        str(ROOT / "pipelines/configs/smoke.yaml"), [], str(ROOT), "smoke-1", run_flags=cache_flags(args)
    )
    assert shlex.split(entrypoint) == ["relay", "run", "pipelines/configs/smoke.yaml", "--run-id", "smoke-1", *flags]
