"""Losing the head node mid-run: a new cluster, then one command finishes the run as a job there.

The run record (config, command, ledger) is in the S3 store beside the artifacts, so the new
cluster (a new head and new workers, nothing carried over) needs only the run id:
`relay submit --resume RUN_ID --address NEW-HEAD` runs `relay resume RUN_ID` as a job, and
only the stages without a complete manifest run again.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid

import pytest

from tests.cluster.cluster import wait_for
from tests.cluster.conftest import Stack
from tests.cluster.helpers import ledger, manifests, mlflow_runs

pytestmark = [pytest.mark.cluster, pytest.mark.cluster_faults, pytest.mark.integration, pytest.mark.timeout(1800)]

SMOKE = "pipelines/configs/smoke.yaml"
RUN = ["crest.generations=1", "train.steps=60", "train.checkpoint_every=20"]
STAGES = 3  # data/split, g00/train, g00/evaluate


def test_head_loss_then_resume_as_a_job_on_a_new_cluster_runs_only_unfinished_stages(stack: Stack) -> None:
    stack.heal()
    store, run_id = stack.store("head-loss"), f"head-loss-{uuid.uuid4().hex[:6]}"
    old = stack.cluster
    submitted = stack.relay("submit", SMOKE, *RUN, "--run-id", run_id, "--address", old.dashboard, store=store)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    wait_for(lambda: "data/split" in manifests(stack, store), 900, "the first stage to finish", poll_s=0.5)

    try:
        for pid in old.nodes["head"].refresh():  # the head: its GCS, raylet, dashboard, and the job's driver
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        status = ledger(stack, store, run_id)["status"]  # read before a new cluster exists
    finally:  # a new cluster also when the above failed: the rest of the tier needs a head
        new = stack.new_cluster()
    # Read once the old workers are stopped too: a stage running on a worker node when the head died
    # could still finish its write to the store (seen: g00/train's manifest landed after the kill).
    done_before = set(manifests(stack, store))
    assert status == "RUNNING", "the driver died without closing its ledger"
    assert new.dashboard != old.dashboard

    resumed = stack.relay("submit", "--resume", run_id, "--address", new.dashboard, "--wait", store=store)
    assert resumed.returncode == 0, resumed.stdout[-5000:] + resumed.stderr[-3000:]
    log = resumed.stdout
    assert log.splitlines()[0] == run_id, "the new cluster knows no job by this id: the resumed job keeps it"
    counts = re.search(rf"run {re.escape(run_id)} finished: (\d+) executed, (\d+) cached", log)
    assert counts, log[-5000:]
    executed, cached = int(counts[1]), int(counts[2])
    print(f"\nhead killed after {sorted(done_before)}; resumed on a new cluster: {executed} executed, {cached} cached")
    assert "data/split" in done_before and "g00/evaluate" not in done_before, "killed mid-run"
    assert cached == len(done_before) and executed == STAGES - len(done_before)
    for stage in done_before:
        assert f"skip {stage}: cache hit" in log and f"run {stage} (" not in log
    assert ledger(stack, store, run_id)["status"] == "FINISHED"
    parents = [r for r in mlflow_runs(stack, run_id) if r["data"]["tags"] and _kind(r) == "pipeline"]
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED", "the MLflow run was reattached"


def _kind(run: dict) -> str | None:
    return next((tag["value"] for tag in run["data"]["tags"] if tag["key"] == "relay.kind"), None)
