"""Pseudo-labeling throughput and memory: the stage (through the Parquet write) vs a plain inference loop.

The stage side is ``pipelines.stages.pseudo_label.pseudo_label_generation`` with a StageContext, its output
consumed by ``ArtifactStore.write_stage`` (the streamed Parquet write, digest and manifest),
exactly as ``run_stage_body`` runs it. The plain side is a ``torch.inference_mode`` loop that
gathers the same unlabeled images from the same dataset by id, runs the same model and batch size,
and keeps the probabilities in one array. Both use one torch thread (a 1-CPU stage). With
``--workers k`` > 1 the stage also runs with ``resources.pseudo_label.workers = k`` (shards on Ray
actors, ``orchestrator.engine.distributed``; the k actors start inside every timed call).

Images: scaling N needs more images than digits has, so the unlabeled ids cycle over the bundled
``synthetic`` dataset (2000 images, 1x16x16). The model is an untrained small_cnn (throughput does
not depend on the weights).

Speed: for each N, one fresh process runs every method on the same split, interleaved (the order
rotates each repeat) after a one-shard warm-up of each, so load on the shared cores hits all
methods alike; medians of wall time, and for the in-process methods also of CPU time (less
sensitive to other processes). Fixed cost and marginal rows/s come from t(N) and t(scale x N).

Memory: each (method, N) runs in a fresh process: a one-shard warm-up (first-call allocations
are not a property of N), VmHWM reset, one call at N rows; peak RSS growth over the process
before the call (the split table and the dataset already loaded). The children run with glibc's
mmap threshold pinned and Arrow on the system allocator, so freed buffers go back to the OS and
RSS tracks what the code holds, not what the allocator kept from earlier calls (with the dynamic
threshold the plain loop's RSS grew by ~6 KB a row through heap fragmentation, and a same-size
warm-up hid O(N) buffers in retained heap). ``growth_bytes_per_row`` is the marginal growth
(peak(scale x N) - peak(N)) / ((scale - 1) x N); the stage is flat when it stays under
``FLAT_BYTES_PER_ROW`` (below one int64 a row: holding the ids costs 8-16 B a row, holding the
predictions 70+).

Goals (issue 7): stage >= 0.95 x plain rows/s with 1 worker; stage memory flat in N.

Usage: python benchmarks/labeling.py [--rows 20000] [--scale 10] [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

GOAL_RATIO = 0.95
FLAT_BYTES_PER_ROW = 8.0
# RSS that tracks live bytes: freed buffers above 64 KiB are unmapped, free heap above 128 KiB is trimmed.
MEMORY_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_TRIM_THRESHOLD_": "131072",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


def data_section() -> Any:
    """The stages' `data` config section for the synthetic dataset; imported here, like all of pipelines, so
    that MEMORY_ENV is in place before pyarrow and torch load."""
    from pipelines.schema import DataSection

    return DataSection(name="synthetic")


def rss_kb(field: str) -> int:
    """VmRSS or VmHWM of this process in kB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Make VmHWM restart from the current RSS (Linux: write 5 to clear_refs); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def setup(rows: int) -> tuple[Any, Any, Any]:
    """(split table with `rows` unlabeled ids cycling over the dataset, checkpoint, those ids)."""
    import numpy as np
    import pyarrow as pa
    import torch

    from pipelines.models import create_model
    from pipelines.split import SPLIT_SCHEMA
    from pipelines.stages.common import dataset_of, model_checkpoint

    dataset = dataset_of(data_section()).train
    ids = np.arange(rows, dtype=np.int64) % len(dataset.labels)
    split = pa.table(
        {
            "sample_id": ids,
            "label": dataset.labels.numpy()[ids].astype(np.int32),
            "subset": pa.repeat(pa.scalar("unlabeled"), rows),
        },
        schema=SPLIT_SCHEMA,
    )
    torch.manual_seed(0)
    model = create_model("small_cnn", dataset.num_classes, int(dataset.images.shape[1]))
    checkpoint = model_checkpoint(model, "small_cnn", dataset.num_classes, int(dataset.images.shape[1]), 0.0)
    return split, checkpoint, ids


def run_stage(split: Any, checkpoint: Any, device: str, workers: int, batch_size: int, shard_size: int) -> int:
    """The stage body plus the store's streamed write, as run_stage_body does; returns the rows written."""
    from orchestrator.dag import Resources, StageContext
    from orchestrator.engine.artifacts import ArtifactStore
    from pipelines.stages.pseudo_label import pseudo_label_generation

    ctx = StageContext(run_id="bench", stage="g00/pseudo_label", generation=0, seed=0, device=device, attempt=1)
    if workers > 1:
        from orchestrator.engine import distributed

        ctx.shard_mapper = distributed.actor_pool_mapper(Resources(num_cpus=1, workers=workers))
    params = {
        "data": data_section(),
        "batch_size": batch_size,
        "shard_size": shard_size,
        "generation": 0,
        "io": {"split": "split", "model": "model", "pseudo_labels": "pl"},
    }
    result = pseudo_label_generation(ctx, {"split": split, "model": checkpoint}, params)
    with tempfile.TemporaryDirectory(prefix="relay-label-") as tmp:
        ArtifactStore(tmp).write_stage("f" * 64, ctx.stage, result)
    return int(result.metrics["rows"])


def run_plain(ids: Any, checkpoint: Any, device: str, batch_size: int) -> int:
    """The plain loop: gather the images by id, eval mode, inference_mode, softmax per batch, one array."""
    import numpy as np
    import torch

    from pipelines.augment import to_float
    from pipelines.stages.common import dataset_of, load_model

    images = dataset_of(data_section()).train.images[torch.from_numpy(ids)]
    model = load_model(checkpoint, device)
    chunks = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            logits = model(to_float(images[start : start + batch_size].to(device)))
            chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return int(np.concatenate(chunks).shape[0])


def calls(split: Any, checkpoint: Any, ids: Any, args: Any, workers: int) -> dict[str, Any]:
    """Method name -> a call labeling every row of ``split``."""
    methods = {
        "plain": lambda: run_plain(ids, checkpoint, args.device, args.batch_size),
        "stage": lambda: run_stage(split, checkpoint, args.device, 1, args.batch_size, args.shard_size),
    }
    if workers > 1:
        methods[f"stage_{workers}"] = lambda: run_stage(
            split, checkpoint, args.device, workers, args.batch_size, args.shard_size
        )
    return methods


def child_speed(args: Any) -> None:
    """Every method at N rows in this one process, interleaved; prints JSON of wall and CPU times."""
    import torch

    torch.set_num_threads(1)
    split, checkpoint, ids = setup(args.rows)
    if args.workers > 1:
        import ray

        ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False)
    methods = calls(split, checkpoint, ids, args, args.workers)
    small = min(args.rows, args.shard_size)
    for call in calls(split.slice(0, small), checkpoint, ids[:small], args, args.workers).values():
        call()  # warm-up: lazy imports, first-call allocations
    names = list(methods)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, args.repeats)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started_cpu, started = time.process_time(), time.perf_counter()
            methods[name]()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    print(json.dumps({"wall": wall, "cpu": cpu, "loadavg": os.getloadavg()[0]}))


def child_memory(args: Any) -> None:
    """One method at N rows in this fresh process: peak RSS growth of one call after a one-shard warm-up."""
    import torch

    torch.set_num_threads(1)
    split, checkpoint, ids = setup(args.rows)
    small = min(args.rows, args.shard_size)
    calls(split.slice(0, small), checkpoint, ids[:small], args, 1)[args.child]()
    call = calls(split, checkpoint, ids, args, 1)[args.child]
    before = rss_kb("VmRSS")
    if not reset_peak():
        raise SystemExit("cannot reset VmHWM (/proc/self/clear_refs); the memory check needs Linux >= 4.0")
    done = call()
    print(json.dumps({"rows": done, "peak_rss_growth_mb": (rss_kb("VmHWM") - before) / 1024}))


def spawn(args: Any, mode: str, rows: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--rows",
        str(rows),
        "--device",
        args.device,
        "--workers",
        str(args.workers),
        "--batch-size",
        str(args.batch_size),
        "--shard-size",
        str(args.shard_size),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=_common.ROOT, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{mode} N={rows} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


LABELS = {"plain": "plain inference_mode loop", "stage": "stage + Parquet write, 1 worker"}


def measure(args: Any, sizes: list[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The table rows (method x N) and the verdicts."""
    speed = {n: spawn(args, "speed", n) for n in sizes}
    memory = {(m, n): spawn(args, m, n, MEMORY_ENV)["peak_rss_growth_mb"] for n in sizes for m in ("plain", "stage")}
    rows = []
    for n in sizes:
        wall = {name: _common.median(times) for name, times in speed[n]["wall"].items()}
        for name, seconds in wall.items():
            row = {
                "method": LABELS.get(name, f"stage + Parquet write, {args.workers} workers"),
                "rows": n,
                "rows_per_s": n / seconds,
                "vs_plain": wall["plain"] / seconds,
                "cpu_vs_plain": None,
                "peak_rss_growth_mb": memory.get((name, n)),
                "loadavg": speed[n]["loadavg"],
            }
            if name in ("plain", "stage"):
                row["cpu_vs_plain"] = _common.median(speed[n]["cpu"]["plain"]) / _common.median(speed[n]["cpu"][name])
            rows.append(row)
    n, big = sizes
    verdicts: dict[str, Any] = {}
    for name in speed[n]["wall"]:
        t_small, t_big = _common.median(speed[n]["wall"][name]), _common.median(speed[big]["wall"][name])
        verdicts[f"{name}_fixed_s"] = (big * t_small - n * t_big) / (big - n)
        verdicts[f"{name}_marginal_rows_per_s"] = (big - n) / max(t_big - t_small, 1e-9)
    for name in ("plain", "stage"):
        verdicts[f"{name}_growth_bytes_per_row"] = (memory[(name, big)] - memory[(name, n)]) * 2**20 / (big - n)
    stage_ratios = [row["vs_plain"] for row in rows if row["method"] == LABELS["stage"]]
    verdicts["speed_goal_met"] = min(stage_ratios) >= GOAL_RATIO
    verdicts["memory_flat"] = verdicts["stage_growth_bytes_per_row"] < FLAT_BYTES_PER_ROW
    return rows, verdicts


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000, help="N; speed and memory also run at scale x N")
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="also time the sharded stage on this many actors (>1)")
    p.add_argument("--batch-size", type=int, default=512, help="label.batch_size")
    p.add_argument("--shard-size", type=int, default=2048, help="label.shard_size")
    p.add_argument("--child", choices=("speed", "plain", "stage"), help="internal: one measurement in this process")
    args = p.parse_args()
    args.device = _common.device_or_exit(args.device)
    if args.child == "speed":
        child_speed(args)
        return
    if args.child:
        child_memory(args)
        return
    if args.scale < 2:
        p.error("--scale must be >= 2: flatness compares N with scale x N rows")
    rows, verdicts = measure(args, [args.rows, args.rows * args.scale])
    columns = ["method", "rows", "rows_per_s", "vs_plain", "cpu_vs_plain", "peak_rss_growth_mb", "loadavg"]
    _common.report(
        "labeling",
        f"pseudo-label rows/s and peak memory ({args.device}, 1 torch thread per worker)",
        rows,
        {
            "goal_vs_plain": GOAL_RATIO,
            "flat_bytes_per_row": FLAT_BYTES_PER_ROW,
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
            "repeats": args.repeats,
            "memory_env": MEMORY_ENV,
            **verdicts,
        },
        columns,
    )
    print("\n" + "\n".join(f"{key}: {_common._cell(value)}" for key, value in verdicts.items()))


if __name__ == "__main__":
    main()
