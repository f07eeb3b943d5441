"""`relay tune --address HOST:PORT` on a `ray start` cluster: its --resume joins the same cluster, its lines say how.

The sweep keeps the cluster it joined beside its stores (sweep-stores.json); before, the resume line
had no --address and the pasted resume ran the rest of the sweep on a new local Ray of the driver's
machine. best.yaml's header names the stores the sweep took from the shell (an MLflow server).
"""

from __future__ import annotations

import json

import pytest

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
