"""1 worker vs 2 workers on a real local Ray (2 CPUs, gloo): the global batch and schedule do not change.

- A BatchNorm-free model trained with `train_fixmatch` through Ray Train: 1 and 2 workers take the
  same steps over the same samples, and the final weights agree to float rounding (DDP's mean of
  the two half-batch gradients is the full-batch gradient).
- CReST's own `g00/train` (small CNN, with BatchNorm): same steps and samples; weights differ only
  through BatchNorm's per-rank batch statistics, and the balanced accuracy stays within a tolerance.
- The pseudo-label table from 2 actors is byte-identical to the one from 1 actor.

Run with `-s` to see the figures.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.dag import Pipeline, Resources, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.run_state import RunSummary
from orchestrator.engine.runner import Runner, StageState
from pipelines.builders import crest
from pipelines.stages.augmentation import augmenters
from pipelines.stages.common import stage_generator, subset_images
from pipelines.stages.train import fixmatch_settings
from pipelines.training.fixmatch import train_fixmatch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
BN_FREE_TOLERANCE = 1e-3
ACCURACY_TOLERANCE = 0.15


def linear_fixmatch(ctx, inputs, params) -> StageResult:
    """A BatchNorm-free check model (softmax regression on digits) through the real FixMatch loop."""
    data = params["data"]
    generator = stage_generator(ctx)
    split = inputs["data/split"]
    _, images, labels = subset_images(data, split, "labeled")
    _, unlabeled, _ = subset_images(data, split, "unlabeled")
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(images.image_shape), 10))
    settings = fixmatch_settings(params["train"], params["crest"])
    weak_fn, strong_fn = augmenters(params["augment"], data)
    reports: list[tuple[int, dict[str, float]]] = []
    ema = train_fixmatch(
        model,
        images,
        labels,
        unlabeled,
        10,
        settings,
        weak_fn,
        strong_fn,
        ctx.device,
        generator,
        report=lambda step, m: reports.append((step, m)),
        report_every=params["train"].report_every,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    state = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
    last_step, last = reports[-1]
    return StageResult(
        outputs={"linear/model": {"state_dict": state}},
        metrics={"steps": float(last_step), "samples_seen": last["samples_seen"]},
    )


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def smoke_config(*overrides: str) -> Any:
    data = apply_overrides(load_yaml(SMOKE), ["label.shard_size=64", *overrides])
    return validate_config(crest.CrestConfig, data)


def run(executor, store: Path, pipeline: Pipeline, stop_after: str | None = None) -> RunSummary:
    runner = Runner(ArtifactStore(str(store)), executor, NullTracker(), "v1", seed=0)
    return runner.run(pipeline, f"run-{store.name}", stop_after=stop_after)


def weights(store: Path, summary: RunSummary, stage: str, output: str) -> dict[str, torch.Tensor]:
    return ArtifactStore(str(store)).load(summary.manifests[stage].outputs[output])["state_dict"]


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


def bn_free_runs(executor, tmp_path: Path, num_gpus: float = 0.0) -> tuple[Any, dict[int, tuple[dict, dict]]]:
    """The BN-free check model trained on 1 and on 2 workers: (config, workers -> (metrics, weights))."""
    config = smoke_config()
    split = crest.build(config).stage("data/split")
    alignment = crest.alignment_of(config.crest, 0)
    params = {"data": config.data, "train": config.train, "crest": alignment, "augment": config.augment}
    results = {}
    for workers in (1, 2):
        train = Stage(
            "linear/train",
            linear_fixmatch,
            ("data/split",),
            ("linear/model",),
            params=params,
            resources=Resources(num_cpus=1, num_gpus=num_gpus, workers=workers),
        )
        store = tmp_path / f"w{workers}"
        summary = run(executor, store, Pipeline("linear", [split, train]))
        results[workers] = (
            summary.manifests["linear/train"].metrics,
            weights(store, summary, "linear/train", "linear/model"),
        )
    return config, results


def test_bn_free_model_one_and_two_workers_agree(ray_executor, tmp_path):
    config, results = bn_free_runs(ray_executor, tmp_path)
    (m1, w1), (m2, w2) = results[1], results[2]
    diff = max_abs_diff(w1, w2)
    print(
        f"\nBN-free: steps {m1['steps']:.0f} vs {m2['steps']:.0f}, samples {m1['samples_seen']:.0f} vs "
        f"{m2['samples_seen']:.0f}, max |w1 - w2| = {diff:.3g}"
    )
    assert m1["steps"] == m2["steps"] == config.train.steps
    assert (
        m1["samples_seen"]
        == m2["samples_seen"]
        == config.train.steps * config.train.batch_size * (1 + config.train.unlabeled_ratio)
    )
    assert diff < BN_FREE_TOLERANCE


@pytest.fixture(scope="module")
def crest_runs(ray_executor, tmp_path_factory) -> dict[int, tuple[Path, RunSummary, RunSummary]]:
    """g00/train, g00/evaluate and g00/pseudo_label of smoke.yaml with 1 and with 2 workers."""
    runs = {}
    for workers in (1, 2):
        config = smoke_config(f"resources.train.workers={workers}", f"resources.pseudo_label.workers={workers}")
        store = tmp_path_factory.mktemp(f"crest{workers}") / "store"
        pipeline = crest.build(config)
        evaluated = run(ray_executor, store, pipeline, stop_after="g00/evaluate")
        runs[workers] = (store, run(ray_executor, store, pipeline, stop_after="g00/pseudo_label"), evaluated)
    return runs


def test_crest_train_same_steps_and_samples_and_close_accuracy(crest_runs, ray_executor):
    (store1, run1, eval1), (store2, run2, eval2) = crest_runs[1], crest_runs[2]
    m1, m2 = run1.manifests["g00/train"].metrics, run2.manifests["g00/train"].metrics
    assert (m1["workers"], m2["workers"]) == (1, 2)
    diff = max_abs_diff(
        weights(store1, run1, "g00/train", "g00/model"), weights(store2, run2, "g00/train", "g00/model")
    )
    acc1 = eval1.manifests["g00/evaluate"].metrics["balanced_accuracy"]
    acc2 = eval2.manifests["g00/evaluate"].metrics["balanced_accuracy"]
    print(
        f"\nCReST g00/train (BatchNorm): steps {m1['steps']:.0f} vs {m2['steps']:.0f}, samples "
        f"{m1['samples_seen']:.0f} vs {m2['samples_seen']:.0f}, max |w1 - w2| = {diff:.3g}, "
        f"balanced accuracy {acc1:.4f} vs {acc2:.4f}"
    )
    assert m1["steps"] == m2["steps"]
    assert m1["samples_seen"] == m2["samples_seen"]
    assert abs(acc1 - acc2) <= ACCURACY_TOLERANCE


def test_pseudo_labels_from_two_actors_equal_one_actor(crest_runs, ray_executor, tmp_path):
    store1, run1, _ = crest_runs[1]
    one = run1.manifests["g00/pseudo_label"].outputs["g00/pseudo_labels"]
    store = tmp_path / "store"
    shutil.copytree(store1, store)
    shutil.rmtree(store / "stages" / run1.stages["g00/pseudo_label"].fingerprint)  # same model, labeled again
    config = smoke_config("resources.pseudo_label.workers=2")
    pipeline = crest.build(config)
    assert pipeline.stage("g00/pseudo_label").resources.workers == 2
    summary = run(ray_executor, store, pipeline, stop_after="g00/pseudo_label")
    assert summary.stages["g00/train"].state is StageState.CACHED
    assert summary.stages["g00/pseudo_label"].state is StageState.SUCCEEDED
    two = summary.manifests["g00/pseudo_label"].outputs["g00/pseudo_labels"]
    table1, table2 = pq.read_table(store1 / one.path), pq.read_table(store / two.path)
    print(
        f"\npseudo-labels: {table1.num_rows} rows, {pq.ParquetFile(store / two.path).num_row_groups} shards; "
        f"digest 1 actor {one.digest[:12]}, 2 actors {two.digest[:12]}"
    )
    assert table1.num_rows > 64 and table2.equals(table1)
    assert two.digest == one.digest
    assert table2.schema.field("probs").type.list_size == 10


def test_data_parallel_ranks_change_the_fingerprint_and_labeling_actors_do_not():
    """Two ranks add their gradients in another order than one (a model 1e-6 apart, test above): another
    result, another cache entry. Labeling actors give the same table (test above): one cache entry."""
    pipeline = crest.build(smoke_config())
    train, label = pipeline.stage("g00/train"), pipeline.stage("g00/pseudo_label")
    two_ranks = dataclasses.replace(train, resources=dataclasses.replace(train.resources, workers=2))
    assert fingerprint(train, {"a": "x"}, "v1") != fingerprint(two_ranks, {"a": "x"}, "v1")
    two_actors = dataclasses.replace(label, resources=dataclasses.replace(label.resources, workers=2))
    assert fingerprint(label, {"a": "x"}, "v1") == fingerprint(two_actors, {"a": "x"}, "v1")
