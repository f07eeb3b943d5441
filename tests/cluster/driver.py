"""A pipeline driver for the labeling node-loss test: smoke.yaml's CReST run, joined to a cluster, optionally slowed.

``python -m tests.cluster.driver GCS STORE RUN_ID [--slow MARKERS DELAY_S] [--stop-after STAGE]``
runs the pipeline as `relay run` would (Runner + RayExecutor joined to the cluster at GCS, the
store on S3) and prints one JSON line: the run's status, each stage's state, attempts and node,
and the digests of the stored outputs. ``--slow`` replaces the labeling body with one whose
shards wait DELAY_S each and leave a marker file named after the node that labels them, so the
test can kill that node while shards are in flight. Only the waiting differs: the table is the
plain body's, shard for shard.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.dag import Pipeline, StageContext, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner
from pipelines.builders import crest
from pipelines.stages.pseudo_label import pseudo_label_generation

SMOKE = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "smoke.yaml"
OVERRIDES = ["train.steps=20", "resources.pseudo_label.workers=2", "label.shard_size=32", "label.batch_size=16"]


def slow_shard(fn: Any, markers: str, delay_s: float, shard: Any) -> Any:
    """Label one shard after ``delay_s``, leaving ``<node id>-<pid>-<first sample id>`` in ``markers``."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    (Path(markers) / f"{node}-{os.getpid()}-{int(shard[0][0])}").touch()
    time.sleep(delay_s)
    return fn(shard)


def slow_pseudo_label(ctx: StageContext, inputs: dict[str, Any], params: dict[str, Any]) -> StageResult:
    """CReST's labeling body with every shard slowed down (the shard mapper wraps the shard function)."""
    mapper, markers, delay_s = ctx.shard_mapper, params["markers"], params["delay_s"]
    ctx.shard_mapper = lambda fn, shards: mapper(functools.partial(slow_shard, fn, markers, delay_s), shards)
    return pseudo_label_generation(ctx, inputs, params)


def pipeline(slow: tuple[str, float] | None) -> tuple[Pipeline, int]:
    config = validate_config(crest.CrestConfig, apply_overrides(load_yaml(SMOKE), OVERRIDES))
    built = crest.build(config)
    if slow is None:
        return built, config.seed
    label = built.stage("g00/pseudo_label")
    params = {**label.params, "markers": slow[0], "delay_s": slow[1]}
    slowed = dataclasses.replace(label, fn=slow_pseudo_label, params=params)
    return Pipeline(built.name, [slowed if s.name == label.name else s for s in built.stages]), config.seed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gcs")
    parser.add_argument("store")
    parser.add_argument("run_id")
    parser.add_argument("--slow", nargs=2, metavar=("MARKERS", "DELAY_S"))
    parser.add_argument("--stop-after")
    args = parser.parse_args()
    built, seed = pipeline(None if args.slow is None else (args.slow[0], float(args.slow[1])))
    store = ArtifactStore(args.store)
    executor = RayExecutor(address=args.gcs)
    with tempfile.TemporaryDirectory(prefix="relay-copies-") as copies:  # removed, as `relay run` removes its own
        try:
            runner = Runner(store, executor, NullTracker(), "cluster-tier", seed, copies_dir=Path(copies))
            summary = runner.run(built, args.run_id, args.stop_after)
        finally:
            executor.shutdown()
    stages = {
        name: {"state": o.state.value, "attempts": o.attempts, "node": o.node} for name, o in summary.stages.items()
    }
    digests = {name: ref.digest for m in summary.manifests.values() for name, ref in m.outputs.items()}
    print(json.dumps({"status": summary.status.value, "stages": stages, "digests": digests}), flush=True)


if __name__ == "__main__":
    main()
