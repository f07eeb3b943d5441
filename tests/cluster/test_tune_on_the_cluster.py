"""Sweeps on a `ray start` cluster: `relay tune --address HOST:PORT`, whose --resume joins the same cluster, and
`relay submit FILE --tune`, whose driver is a job there.

The sweep keeps the cluster it joined beside its stores (sweep-stores.json); before, the resume line
had no --address and the pasted resume ran the rest of the sweep on a new local Ray of the driver's
machine. best.yaml's header names the stores the sweep took from the shell (an MLflow server).
"""

from __future__ import annotations

import json
import shlex
import uuid

import pytest

from orchestrator import jobs
from tests.cluster.conftest import Stack
from tests.integration.cluster import durable_folder

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = "pipelines/configs/smoke.yaml"
TINY = [
    "tune.name=on-cluster",
    "tune.num_samples=1",
    "tune.scheduler=none",
    "crest.generations=1",
    "train.steps=3",
    "train.report_every=3",
    "tracking.log_models=false",
]


def test_a_sweep_that_joined_a_cluster_resumes_there_and_says_so(stack: Stack) -> None:
    stack.heal()
    store = stack.store("tune-cluster")
    with durable_folder("tune-on-cluster") as output:
        first = stack.relay("tune", SMOKE, *TINY, "--output", str(output), "--address", stack.cluster.gcs, store=store)
        said = first.stdout + first.stderr
        assert first.returncode == 0, said[-4000:]
        assert json.loads((output / "sweep-stores.json").read_text())["ray_address"] == stack.cluster.gcs
        header = (output / "best.yaml").read_text().splitlines()[0]
        assert f"MLFLOW_TRACKING_URI={stack.mlflow.url}" in header, header
        assert "INFO mlflow" not in said, "a trial's MLflow INFO lines reached the driver's output"

        resumed = stack.relay("tune", SMOKE, *TINY, "--output", str(output), "--resume", store=store)
        said = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, said[-4000:]
        assert f"joined the Ray cluster at {stack.cluster.gcs}: resuming there" in said, said[-4000:]


def test_a_sweep_submitted_as_a_job_runs_there_and_once_finished_is_not_sent_again(stack: Stack, as_user: str) -> None:
    """`relay submit FILE --tune`: the sweep's driver is a job on the cluster, named sweep-NAME; its best.yaml names a
    job to the same cluster; a new submit of the same sweep is refused before anything is sent; --resume-sweep of the
    finished sweep sends nothing (as `relay submit --resume` of a finished run), where it ran a whole new job."""
    stack.heal()
    store, name = stack.store("tune-job"), f"job-{uuid.uuid4().hex[:6]}"
    with durable_folder("tune-job") as output:
        sweep = [SMOKE, *TINY[1:], f"tune.name={name}", "--tune", "--output", str(output), "--address", as_user]
        first = stack.relay("submit", *sweep, "--wait", store=store)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-3000:]
        assert first.stdout.splitlines()[0] == f"sweep-{name}"
        assert f"Sweep {name}: evaluate/balanced_accuracy" in first.stdout  # the job's own log, streamed
        header = (output / "best.yaml").read_text().splitlines()[0]
        assert shlex.split(header.removeprefix("# "))[-4:] == [
            "submit",
            str(output / "best.yaml"),
            "--address",
            as_user,
        ]
        trials = json.loads((output / "trials.json").read_text())
        assert [trial["status"] for trial in trials] == ["completed"]
        job = next(row for row in jobs.list_jobs(as_user) if row["id"] == f"sweep-{name}")
        assert job["status"] == "SUCCEEDED" and job["metadata"]["relay.sweep"] == name

        again = stack.relay("submit", *sweep, store=store)
        refused = f"a sweep already exists at {output / 'ray' / name}; continue it with --resume-sweep"
        assert again.returncode == 2 and refused in again.stderr, again.stderr[-3000:]
        assert f"sweep-{name}-resume-2" not in {row["id"] for row in jobs.list_jobs(as_user)}

        resumed = stack.relay("submit", *sweep, "--resume-sweep", "--wait", store=store)
        assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-3000:]
        assert (
            resumed.stdout == ""
            and f"sweep {name} finished (its job sweep-{name} SUCCEEDED); nothing to resume" in resumed.stderr
        ), resumed.stderr
        assert [row["id"] for row in jobs.list_jobs(as_user) if row["id"].startswith(f"sweep-{name}")] == [
            f"sweep-{name}"
        ]
        assert json.loads((output / "trials.json").read_text()) == trials  # its finished trial not rerun
        status = stack.relay("status", f"sweep-{name}", "--address", as_user, store=store)
        assert status.stdout.strip() == "SUCCEEDED", status.stderr
