"""A run's kept labeling actor on a real cluster of two 1-CPU nodes: used where it sits, let go when it blocks.

A real multi-node Ray (``ray.cluster_utils``): the driver's node (the head) and one worker node, 1 CPU
each, labeling on 2 workers (the stage's task and one actor, kept for the run: ``workers: 2`` beside a
1-CPU training stage). The pipeline trains a small classifier on scikit-learn's digits with torch,
then pseudo-labels the unlabeled digits in 8 shards; the table must be the one labeling every shard
in this process gives, row for row.

Another run's actor (``Holder``) holds the worker node's CPU when the run starts, so the kept actor
(started beside the run's first stage, which holds no CPU) starts on the head: the driver's node, full.

- The labeling stage's task was pinned softly to the driver's node, so it waited for the CPU its own
  kept actor held, though the other run had ended and the worker node was free; after 30 s the run
  let the actor go, blamed "another run?", and the stage's task said the actor was "lost ... (its
  process or node died)". The kept actor must label instead.
- With the worker node's CPU still held while the labeling stage waits, the worker node's raylet is
  SIGKILLed: the cluster shrinks to 1 CPU, held by the kept actor. The run said "labeling actors now
  one pool per stage call (no room to keep them)" but kept the actor its waiting stage held, and the
  30 s let-go never fired: it waited for good. It must let it go and finish.

``python -m tests.integration.test_kept_actors_on_shrink GCS STORE RUN_ID`` is the second test's
driver (a process of its own, as `relay run` is: a run that hangs is then ended).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from orchestrator.dag import Parallelism, Pipeline, Resources, Stage, StageResult
from orchestrator.engine.actor_pool import ActorPool
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner, StageState
from tests.integration.cluster import REPOSITORY, free_port, ray_temp_dir, wait_for
from tests.integration.test_actor_pools import answers_until_dead
from tests.integration.test_waiting_lost_nodes import FAST_HEALTH_CHECKS, declared_dead

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NAMESPACE = "relay kept actor tests"  # the holder's (another run's actor): the run's first stage finds it by name
WORKER_HOLDER = "another run holds the worker node's CPU"
LABELED = 200  # digits rows the model trains on; the next SHARDS rows are pseudo-labeled
SHARDS = tuple((start, start + 40) for start in range(LABELED, LABELED + 8 * 40, 40))
SHARD_S = 0.5  # each shard's wait: the stage's own task must not label all 8 before its actor has answered
LABEL = Resources(num_cpus=1, workers=2)
STAGE_TASK = "the stage's own task"
HANG_GUARD_S = 480.0  # how long the second test's run may take (it takes about a minute; it hung for good)
STARTED_WITHIN_S = 240.0  # a bound on waiting for an actor to start or a stage to be submitted (never asserted on)


class Holder:
    """Another run's actor: holds a CPU for as long as it lives."""

    def ready(self) -> bool:
        return True


def digits(start: int, stop: int) -> tuple[Any, Any]:
    """scikit-learn's digits rows ``start:stop`` as torch tensors: pixels in [0, 1], and the classes."""
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = torch.tensor(data.data[start:stop] / 16.0, dtype=torch.float32)
    return pixels, torch.tensor(data.target[start:stop], dtype=torch.int64)


def kept_actor_started(bound_s: float = STARTED_WITHIN_S) -> str:
    """The name of the run's first kept labeling actor, once it has started (it answers)."""
    import ray

    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        for name in [n for n in ray.util.list_named_actors() if " pool " in n and n.endswith("-1 worker 0")]:
            try:
                ray.get(ray.get_actor(name).ready.remote(), timeout=2)
                return name
            except (ray.exceptions.GetTimeoutError, ValueError):  # still starting, or its name not there yet
                pass
        time.sleep(0.2)
    raise AssertionError(f"the run's kept labeling actor did not start within {bound_s:g} s")


def split(ctx, inputs, params):
    """The run's first stage (it holds no CPU): wait until the run's kept actor has started, on the head (the only
    CPU free); with ``release``, the other run then ends, freeing the worker node."""
    import ray

    kept_actor_started()
    if params["release"]:
        ray.kill(ray.get_actor(WORKER_HOLDER, namespace=NAMESPACE))
    return StageResult(outputs={"data/split": pa.table({"labeled": [LABELED]})})


def train(ctx, inputs, params):
    """Train a linear classifier on the labeled digits."""
    import torch

    torch.manual_seed(0)
    pixels, classes = digits(0, inputs["data/split"]["labeled"][0].as_py())
    model = torch.nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(pixels), classes).backward()
        optimizer.step()
    return StageResult(outputs={"g00/model": {"weight": model.weight.detach(), "bias": model.bias.detach()}})


def label_rows(weight: Any, bias: Any, shard: tuple[int, int]) -> dict[str, list]:
    """One shard's pseudo-labels (row, class, confidence) and who labeled it (an actor's name, or the task)."""
    import ray
    import torch

    time.sleep(SHARD_S)
    pixels, _ = digits(*shard)
    confidence, label = torch.softmax(pixels @ weight.T + bias, dim=1).max(dim=1)
    rows = list(range(*shard))
    labeler = ray.get_runtime_context().get_actor_name() or STAGE_TASK
    return {
        "row": rows,
        "label": label.tolist(),
        "confidence": confidence.tolist(),
        "labeler": [labeler] * len(rows),
    }


def pseudo_label(ctx, inputs, params):
    """Label every shard on the stage's task and its actors; one table, in shard order."""
    model = inputs["g00/model"]
    parts = list(ctx.map_shards(functools.partial(label_rows, model["weight"], model["bias"]), SHARDS))
    return StageResult(outputs={"g00/pseudo_labels": pa.table(joined(parts, parts[0]))})


def joined(parts: list[dict[str, list]], keys: Any) -> dict[str, list]:
    """The shards' columns ``keys``, shard after shard."""
    return {k: [value for part in parts for value in part[k]] for k in keys}


def split_train_label(other_run_ends: bool, train_cpus: float) -> Pipeline:
    """data/split (no CPU), g00/train (``train_cpus``), g00/pseudo_label (2 workers of 1 CPU)."""
    return Pipeline(
        "kept-on-two-nodes",
        [
            Stage(
                "data/split",
                split,
                (),
                ("data/split",),
                params={"release": other_run_ends},
                resources=Resources(num_cpus=0),
            ),
            Stage("g00/train", train, ("data/split",), ("g00/model",), resources=Resources(num_cpus=train_cpus)),
            Stage(
                "g00/pseudo_label",
                pseudo_label,
                ("g00/model",),
                ("g00/pseudo_labels",),
                resources=LABEL,
                parallelism=Parallelism.SHARDS,
            ),
        ],
    )


def expected_table(model: dict[str, Any]) -> dict[str, list]:
    """Every shard labeled in this process: what the stored table must say, row for row."""
    parts = [label_rows(model["weight"], model["bias"], shard) for shard in SHARDS]
    return joined(parts, ("row", "label", "confidence"))


def two_one_cpu_nodes(temp_dir: Path) -> Any:
    """A head (the driver's node) and a worker node of 1 CPU each; the head declares a killed node dead fast."""
    from ray.cluster_utils import Cluster

    head = {
        "num_cpus": 1,
        "include_dashboard": True,  # Ray's state API: which stages wait for a place
        "dashboard_port": free_port(),
        "dashboard_agent_listen_port": free_port(),
        "temp_dir": str(temp_dir),
        "_system_config": FAST_HEALTH_CHECKS,
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def holder_on(node_id: str, name: str) -> Any:
    """Another run's actor holding ``node_id``'s CPU (once it can start there)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    on_node = NodeAffinitySchedulingStrategy(node_id, soft=False)
    options = {"num_cpus": 1, "name": name, "namespace": NAMESPACE, "scheduling_strategy": on_node}
    return ray.remote(Holder).options(**options).remote()


@pytest.fixture
def cluster(tmp_path):
    """The two nodes, this process joined to them."""
    import ray

    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    temp_dir = ray_temp_dir(tmp_path)  # a short folder in /tmp where tmp_path is too long for Ray's sockets
    nodes = two_one_cpu_nodes(temp_dir)
    try:
        ray.init(address=nodes.address, logging_level="ERROR")
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_the_kept_actor_on_the_drivers_full_node_labels_and_stays_kept(cluster, tmp_path, caplog):
    """README: "on 2 CPUs with k = 2 and a 1-CPU training stage, the one actor is kept"; here it sits on the
    driver's node, its only CPU. Before, the labeling stage waited 30 s for that CPU, the run let the actor
    go ("another run?") and labeled without it."""
    import ray

    caplog.set_level(logging.INFO, logger="orchestrator.engine")
    (worker,) = cluster.worker_nodes
    other_run = holder_on(worker.node_id, WORKER_HOLDER)
    ray.get(other_run.ready.remote(), timeout=STARTED_WITHIN_S)
    pipeline = split_train_label(other_run_ends=True, train_cpus=1)
    store = ArtifactStore(str(tmp_path / "store"))
    executor = RayExecutor()  # joins the cluster above, as `relay run --address` does
    try:
        executor.warm_up(pipeline)
        summary = Runner(store, executor, NullTracker(), "v1", seed=0).run(pipeline, "kept-on-the-head")
    finally:
        executor.shutdown()
    assert "labeling actors: kept for the run" in caplog.text
    assert summary.names(StageState.SUCCEEDED) == ["data/split", "g00/train", "g00/pseudo_label"]
    table = store.load(summary.manifests["g00/pseudo_label"].outputs["g00/pseudo_labels"]).to_pydict()
    model = store.load(summary.manifests["g00/train"].outputs["g00/model"])
    assert {k: table[k] for k in ("row", "label", "confidence")} == expected_table(model)
    labelers = set(table["labeler"])
    assert any(name.endswith("-1 worker 0") for name in labelers), f"the kept actor labeled nothing: {labelers}"
    assert "Letting them go" not in caplog.text, "the run let its kept actor go, as if another run held the rest"


def test_a_kept_actor_the_run_let_go_is_not_said_to_be_lost(cluster, caplog):
    """A labeling call handed a kept actor the run let go while the call waited for a place: the run's own log
    says why; the call said "a labeling actor was lost ... (its process or node died)"."""
    import ray

    pool = ActorPool.start(Resources(num_cpus=0, workers=2), label="let go", count=1)
    ray.get(pool.actors[0].ready.remote(), timeout=STARTED_WITHIN_S)  # started and idle, as a kept actor
    pool.let_go()
    assert answers_until_dead(pool.actors[0]), "the actor never left"
    caplog.set_level(logging.INFO, logger="orchestrator.engine.actor_pool")
    results = list(pool.mapper("g00/pseudo_label", local=True)(lambda shard: shard * 2, range(6)))
    assert results == [0, 2, 4, 6, 8, 10]
    said = [r for r in caplog.records if "labeling actor" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO], [r.getMessage() for r in said]
    assert "was let go by the run before this call took a shard" in said[0].getMessage()
    assert "lost" not in said[0].getMessage() and "died" not in said[0].getMessage()


def test_a_shrink_that_leaves_no_room_lets_the_kept_actor_of_a_waiting_labeling_stage_go(cluster, tmp_path):
    """The training stage holds no CPU here, so the other run can hold the worker node's CPU throughout: the
    labeling stage then waits for a place while its kept actor holds the head's CPU, and the worker node dies."""
    import ray

    (worker,) = cluster.worker_nodes
    other_run = holder_on(worker.node_id, WORKER_HOLDER)
    ray.get(other_run.ready.remote(), timeout=STARTED_WITHIN_S)
    store, log_path = str(tmp_path / "store"), tmp_path / "driver.log"
    command = [sys.executable, "-m", __name__, cluster.address, store, "shrunk"]
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    with log_path.open("w") as log:
        driver = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        wait_for(lambda: "run g00/pseudo_label (attempt 1" in log_path.read_text(), STARTED_WITHIN_S, "labeling")
        cluster.remove_node(worker, allow_graceful=False)  # SIGKILLs the worker node's raylet (the other run's too)
        assert declared_dead(worker.node_id)
        try:
            out, _ = driver.communicate(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run hung after the node loss:\n{log_path.read_text()[-4000:]}")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=60)
    logs = log_path.read_text()
    assert driver.returncode == 0, logs[-4000:]
    assert "labeling actors: kept for the run" in logs and "the cluster shrank to 1.0 CPU" in logs, logs[-4000:]
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["status"] == "FINISHED", logs[-4000:]
    stored = ArtifactStore(store)
    manifests = {name: stored.read_manifest(fp) for name, fp in outcome["fingerprints"].items()}
    table = stored.load(manifests["g00/pseudo_label"].outputs["g00/pseudo_labels"]).to_pydict()
    model = stored.load(manifests["g00/train"].outputs["g00/model"])
    assert {k: table[k] for k in ("row", "label", "confidence")} == expected_table(model)
    assert set(table["labeler"]) == {STAGE_TASK}, "the cluster had room for the stage's own task only"


def main() -> None:
    """Run ``split_train_label`` (the other run keeps its CPU; training holds none) on the cluster at GCS into
    STORE; print the run's status and its stages' fingerprints."""
    parser = argparse.ArgumentParser()
    parser.add_argument("gcs")
    parser.add_argument("store")
    parser.add_argument("run_id")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the stages' functions by this module's own name, not __main__'s: Ray's workers import them from there
    from tests.integration.test_kept_actors_on_shrink import split_train_label as by_name

    pipeline = by_name(other_run_ends=False, train_cpus=0)
    executor = RayExecutor(address=args.gcs)
    try:
        executor.warm_up(pipeline)
        summary = Runner(ArtifactStore(args.store), executor, NullTracker(), "v1", seed=0).run(pipeline, args.run_id)
    finally:
        executor.shutdown()
    fingerprints = {name: outcome.fingerprint for name, outcome in summary.stages.items()}
    print(json.dumps({"status": summary.status.value, "fingerprints": fingerprints}), flush=True)


if __name__ == "__main__":
    main()
