"""Data larger than memory: peak RSS of a training and a labeling worker at N and 10N rows, and their speed vs memory.

Data: a 10-class set of 32x32 RGB images (blocky class templates plus noise, seeded) made here and
written straight into shards chunk by chunk with ``shards.write_dataset`` (raw encoding, the
format's choice for 32x32): N and scale x N rows (200k by default, 600 MB decoded), under a
temporary folder. The benchmark itself never holds a whole set.

Memory: each (worker, path, N) runs in a fresh process with labeling.py's MEMORY_ENV (RSS tracks
what the code holds); the number is the process's peak RSS (VmHWM) over the whole call, imports
included, plus the largest loader worker's. "shards" is the real stage body on `data.name: parquet`
(``train_generation``: CReST's FixMatch stage, 10% of rows labeled, the rest unlabeled;
``pseudo_label_generation`` with its streamed Parquet write) with ``data.buffer_mb`` and one
loader worker. "in memory" is today's path: every image decoded into one tensor first, then the
same loop (training) or the same shard-by-shard labeling. Goal: the shards' peak grows < 10% from
N to scale x N.

Speed, on N rows (they fit in memory): the FixMatch loop and the shard-by-shard labeling with the
same model, settings and batches, from a TensorSource holding every image vs from the shards
(default buffer: the subsets fit and are read once; and a small buffer: the unlabeled set streams
in windows, so its batches differ), interleaved repeats in one process, one torch thread, median
wall time including the reads. Goal: shards >= 0.9 x the in-memory rows/s.

Usage: python benchmarks/data.py [--rows 20000] [--scale 10] [--steps 40] [--buffer-mb 32] [--repeats 3]
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from labeling import MEMORY_ENV, rss_kb

GOAL_GROWTH = 0.10
GOAL_SPEED = 0.9
SHAPE = (3, 32, 32)
CHUNK = 8192


def synthetic_chunks(rows: int, seed: int = 0) -> Any:
    """``rows`` images in chunks: class templates of 4x4 cells (8 pixels each) plus Gaussian noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    templates = rng.integers(30, 220, (10, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        labels = rng.integers(0, 10, n)
        noise = rng.normal(0.0, 25.0, (n, *SHAPE))
        yield np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels


def make_dataset(rows: int, dest: Path) -> float:
    """Write the shards; seconds taken."""
    from pipelines.datasets import shards

    started = time.perf_counter()
    classes = [str(c) for c in range(10)]
    shards.write_dataset(str(dest), classes, SHAPE, "raw", {"train": synthetic_chunks(rows)}, source={"name": "bench"})
    return time.perf_counter() - started


def split_for(rows: int) -> Any:
    """Every 10th row labeled, the rest unlabeled (no test rows: nothing here evaluates)."""
    import numpy as np
    import pyarrow as pa

    from pipelines.datasets import checks, shards
    from pipelines.split import SPLIT_SCHEMA

    ids = np.arange(rows, dtype=np.int64)
    labels = checks.read_labels(ARGS.dest, shards.read_manifest(ARGS.dest), "train").astype(np.int32)
    subset = np.where(ids % 10 == 0, "labeled", "unlabeled")
    return pa.table({"sample_id": ids, "label": labels, "subset": subset}, schema=SPLIT_SCHEMA)


def data_section(buffer_mb: int) -> Any:
    from pipelines.schema import DataSection

    return DataSection(name="parquet", uri=ARGS.dest, buffer_mb=buffer_mb, loader_workers=1)


def train_params(buffer_mb: int, steps: int) -> dict[str, Any]:
    """The CReST train stage's params (FixMatch: batch 64, mu 7, RandAugment) for ``steps`` steps."""
    from pipelines.builders.crest import CrestSection, alignment_of
    from pipelines.schema import AugmentSection, ModelSection, TrainSection

    return {
        "data": data_section(buffer_mb),
        "model": ModelSection(),
        "train": TrainSection(steps=steps, report_every=steps, checkpoint_every=0),
        "augment": AugmentSection(),
        "crest": alignment_of(CrestSection(), 0),
        "generation": 0,
        "io": {"split": "split", "model": "model"},
    }


def context(stage: str) -> Any:
    from orchestrator.dag import StageContext

    return StageContext(run_id="bench", stage=stage, generation=0, seed=0, device="cpu", attempt=1)


def checkpoint() -> dict[str, Any]:
    import torch

    from pipelines.models import create_model
    from pipelines.stages.common import model_checkpoint

    torch.manual_seed(0)
    return model_checkpoint(create_model("small_cnn", 10, 3), "small_cnn", 10, 3, 0.0)


# --- what each child process runs --------------------------------------------------------------


def shard_train(split: Any) -> None:
    from pipelines.stages.train import train_generation

    train_generation(context("g00/train"), {"split": split}, train_params(ARGS.buffer_mb, ARGS.memory_steps))


def shard_label(split: Any) -> None:
    """The labeling stage with its streamed Parquet write, as run_stage_body runs it."""
    from orchestrator.engine.artifacts import ArtifactStore
    from pipelines.stages.pseudo_label import pseudo_label_generation

    params = {"data": data_section(ARGS.buffer_mb), "batch_size": 512, "shard_size": 2048, "generation": 0}
    params["io"] = {"split": "split", "model": "model", "pseudo_labels": "pl"}
    result = pseudo_label_generation(context("g00/pseudo_label"), {"split": split, "model": checkpoint()}, params)
    with tempfile.TemporaryDirectory(prefix="relay-data-") as tmp:
        ArtifactStore(tmp).write_stage("f" * 64, "g00/pseudo_label", result)


def all_images() -> Any:
    """Every image in one tensor: what an in-memory dataset is."""
    import numpy as np

    from pipelines.datasets.catalog import cached_manifest
    from pipelines.datasets.image_source import ShardSource

    manifest = cached_manifest(ARGS.dest)
    source = ShardSource(ARGS.dest, manifest, "train", 1 << 40, workers=1)
    return source.read_all(np.arange(manifest.splits["train"].count))


def fixmatch(labeled: Any, targets: Any, unlabeled: Any, steps: int) -> None:
    """The CReST train stage's loop on two sources, with the stage's own settings and augmentations."""
    import torch

    from pipelines.models import create_model
    from pipelines.stages.augmentation import augmenters
    from pipelines.stages.train import fixmatch_settings
    from pipelines.training.fixmatch import train_fixmatch

    params = train_params(ARGS.buffer_mb, steps)
    weak, strong = augmenters(params["augment"], params["data"])
    settings = fixmatch_settings(params["train"], params["crest"])
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_fixmatch(
        create_model("small_cnn", 10, 3), labeled, targets, unlabeled, 10, settings, weak, strong, "cpu", generator
    )


def memory_train(split: Any) -> None:
    import torch

    from pipelines.datasets.image_source import TensorSource
    from pipelines.stages.common import subset_arrays

    images = TensorSource(all_images())
    labeled, targets = subset_arrays(split, "labeled")
    unlabeled, _ = subset_arrays(split, "unlabeled")
    fixmatch(images.subset(labeled), torch.from_numpy(targets), images.subset(unlabeled), ARGS.memory_steps)


def label_shards(source: Any, split: Any) -> None:
    """Shard-by-shard labeling as ShardLabeler does it: the shard's images, then predict_probs."""
    from pipelines.pseudo_label import predict_probs
    from pipelines.stages.common import load_model, subset_arrays

    model = load_model(checkpoint(), "cpu")
    ids, _ = subset_arrays(split, "unlabeled")
    for start in range(0, len(ids), 2048):
        predict_probs(model, source.subset(ids[start : start + 2048]), 512, "cpu")


def memory_label(split: Any) -> None:
    from pipelines.datasets.image_source import TensorSource

    label_shards(TensorSource(all_images()), split)


MEMORY_CALLS = {
    "train_shards": shard_train,
    "train_memory": memory_train,
    "label_shards": shard_label,
    "label_memory": memory_label,
}


def child_memory() -> None:
    """One call in this fresh process: its peak RSS and the largest child's (loader workers)."""
    import torch

    torch.set_num_threads(1)
    split = split_for(ARGS.rows)
    before = rss_kb("VmRSS")
    started = time.perf_counter()
    MEMORY_CALLS[ARGS.child](split)
    seconds = time.perf_counter() - started
    from pipelines.stages.common import _image_sources

    _image_sources.cache_clear()  # the cached sources own the loader workers: end them so they are counted
    gc.collect()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {"peak_mb": rss_kb("VmHWM") / 1024, "before_mb": before / 1024, "children_mb": children, "s": seconds}
        )
    )


def speed_calls(split: Any) -> dict[str, Any]:
    """Method -> a call; the in-memory tensor is loaded once, untimed (an in-memory dataset is cached per process)."""
    import torch

    from pipelines.datasets.catalog import cached_manifest
    from pipelines.datasets.image_source import ShardSource, TensorSource, window_rows
    from pipelines.stages.common import subset_arrays

    images = all_images()
    labeled, targets = subset_arrays(split, "labeled")
    unlabeled, _ = subset_arrays(split, "unlabeled")
    targets = torch.from_numpy(targets)
    manifest = cached_manifest(ARGS.dest)
    memory = TensorSource(images, window_rows(256 << 20, SHAPE))
    fits = ShardSource(ARGS.dest, manifest, "train", 256 << 20, workers=1)
    small = ShardSource(ARGS.dest, manifest, "train", ARGS.buffer_mb << 20, workers=1)

    def train(source: Any) -> Any:
        return lambda: fixmatch(source.subset(labeled), targets, source.subset(unlabeled), ARGS.steps)

    return {
        "train_memory": train(memory),
        "train_shards": train(fits),
        "train_shards_streamed": train(small),
        "label_memory": lambda: label_shards(memory, split),
        "label_shards": lambda: label_shards(fits, split),
    }


def child_speed() -> None:
    import torch

    torch.set_num_threads(1)
    split = split_for(ARGS.rows)
    calls = speed_calls(split)
    names = list(calls)
    wall: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, ARGS.repeats)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            calls[name]()
            wall[name].append(time.perf_counter() - started)
    print(json.dumps({"wall": wall, "loadavg": os.getloadavg()[0]}))


# --- the parent: make the data, spawn the children, report ------------------------------------------


def spawn(child: str, rows: int, dest: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", child, "--rows", str(rows), "--dest", str(dest)]
    command += ["--steps", str(ARGS.steps), "--memory-steps", str(ARGS.memory_steps)]
    command += ["--buffer-mb", str(ARGS.buffer_mb), "--repeats", str(ARGS.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=_common.ROOT, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{child} N={rows} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_rows(sizes: list[int], folders: dict[int, Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    peaks = {(name, n): spawn(name, n, folders[n], MEMORY_ENV) for name in MEMORY_CALLS for n in sizes}
    small, big = sizes
    rows, verdicts = [], {}
    for name in MEMORY_CALLS:
        growth = peaks[(name, big)]["peak_mb"] / peaks[(name, small)]["peak_mb"] - 1
        verdicts[f"{name}_growth"] = growth
        for n in sizes:
            worker, path = name.split("_")
            result = peaks[(name, n)]
            rows.append(
                {
                    "worker": worker,
                    "path": "in memory (today)" if path == "memory" else f"shards (buffer {ARGS.buffer_mb} MB)",
                    "rows": n,
                    "peak_rss_mb": result["peak_mb"],
                    "loader_worker_peak_mb": result["children_mb"] if path == "shards" else None,
                    "growth_vs_N": growth if n == big else None,
                    "seconds": result["s"],
                }
            )
    verdicts["memory_goal_met"] = max(verdicts["train_shards_growth"], verdicts["label_shards_growth"]) < GOAL_GROWTH
    return rows, verdicts


def speed_rows(n: int, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    result = spawn("speed", n, folder)
    wall = {name: _common.median(times) for name, times in result["wall"].items()}
    labels = {
        "memory": "in memory (one tensor)",
        "shards": "shards, default buffer (subsets fit: read once)",
        "shards_streamed": f"shards, buffer {ARGS.buffer_mb} MB (unlabeled set streams)",
    }
    rows = []
    for name, seconds in wall.items():
        worker, path = name.split("_", 1)
        baseline = wall[f"{worker}_memory"]
        rows.append(
            {"worker": worker, "path": labels[path], "rows": n, "seconds": seconds, "vs_memory": baseline / seconds}
        )
    verdicts = {
        "train_speed_vs_memory": wall["train_memory"] / wall["train_shards"],
        "train_streamed_speed_vs_memory": wall["train_memory"] / wall["train_shards_streamed"],
        "label_speed_vs_memory": wall["label_memory"] / wall["label_shards"],
        "speed_loadavg": result["loadavg"],
    }
    verdicts["speed_goal_met"] = min(verdicts["train_speed_vs_memory"], verdicts["label_speed_vs_memory"]) >= GOAL_SPEED
    return rows, verdicts


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000, help="N; memory also runs at scale x N")
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--steps", type=int, default=40, help="FixMatch steps of each timed training call")
    p.add_argument("--memory-steps", type=int, default=60, help="FixMatch steps of the memory runs")
    p.add_argument("--buffer-mb", type=int, default=32, help="data.buffer_mb of the sharded runs (below N's 60 MB)")
    p.add_argument("--child", choices=("speed", *MEMORY_CALLS), help="internal: one measurement in this process")
    p.add_argument("--dest", help="internal: the dataset of a child")
    global ARGS
    ARGS = p.parse_args()
    if ARGS.child == "speed":
        child_speed()
        return
    if ARGS.child:
        child_memory()
        return
    sizes = [ARGS.rows, ARGS.rows * ARGS.scale]
    with tempfile.TemporaryDirectory(prefix="relay-bench-data-") as tmp:
        folders = {n: Path(tmp) / f"synthetic-{n}" for n in sizes}
        made = {n: make_dataset(n, folders[n]) for n in sizes}
        speed, speed_verdicts = speed_rows(sizes[0], folders[sizes[0]])
        memory, memory_verdicts = memory_rows(sizes, folders)
    verdicts = {**memory_verdicts, **speed_verdicts, "import_s": made}
    payload = {"goal_growth": GOAL_GROWTH, "goal_speed": GOAL_SPEED, "buffer_mb": ARGS.buffer_mb, "speed": speed}
    payload.update(steps=ARGS.steps, memory_steps=ARGS.memory_steps, repeats=ARGS.repeats, memory_env=MEMORY_ENV)
    columns = ["worker", "path", "rows", "peak_rss_mb", "loader_worker_peak_mb", "growth_vs_N", "seconds"]
    _common.report(
        "data",
        "peak RSS of a training and a labeling worker (1 torch thread)",
        memory,
        {**payload, **verdicts},
        columns,
    )
    print("\n" + _common.table(speed, ["worker", "path", "rows", "seconds", "vs_memory"]))
    print("\n" + "\n".join(f"{key}: {_common._cell(value)}" for key, value in verdicts.items()))


ARGS: Any = None

if __name__ == "__main__":
    main()
