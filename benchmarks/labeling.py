"""Pseudo-labeling throughput and memory: the stage (through the Parquet write) vs a plain inference loop.

The stage side is ``pipelines.stages.pseudo_label_generation`` with a StageContext, its output
consumed by ``ArtifactStore.write_stage`` (the streamed Parquet write, digest and manifest),
exactly as ``execute_stage`` runs it. The plain side is a ``torch.inference_mode`` loop over
the same model, images and batch size that keeps the probabilities in one array. Both use one
torch thread (a 1-CPU stage). With ``--workers k`` > 1 the stage also runs with
``resources.pseudo_label.workers = k`` (shards on Ray actors, ``orchestrator.distributed``).

Images: scaling N needs more images than digits has, so the unlabeled ids cycle over the
bundled ``synthetic`` dataset (2000 images, 1x16x16): the stage gathers N real image rows, so
its memory grows with N as with a real dataset of that size. The model is an untrained
small_cnn (throughput does not depend on the weights).

Memory: each (method, N) runs in a fresh process; peak RSS growth during the call (VmHWM after
minus VmRSS before, HWM reset first) over the input images already in memory. Goals (the
issue): stage >= 0.95 x plain rows/s with 1 worker; memory flat in N (extra bytes per row not
growing, i.e. peak minus inputs bounded by the streamed shard size, not by N).

Usage: python benchmarks/labeling.py [--rows 20000] [--scale 10] [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

GOAL_RATIO = 0.95
DATA = {"name": "synthetic", "root": None}


def rss_kb(field: str) -> int:
    """VmRSS or VmHWM of this process in kB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Make VmHWM restart from the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def setup(rows: int, device: str) -> tuple[Any, Any, Any]:
    """(split table with `rows` unlabeled ids cycling over the dataset, checkpoint, images of those ids)."""
    import numpy as np
    import pyarrow as pa
    import torch

    from pipelines import stages
    from pipelines.models import create_model

    dataset = stages.dataset_of(DATA).train
    ids = np.arange(rows, dtype=np.int64) % len(dataset.labels)
    split = pa.table({"sample_id": ids, "label": dataset.labels.numpy()[ids].astype(np.int32),
                      "subset": ["unlabeled"] * rows}, schema=stages.SPLIT_SCHEMA)
    torch.manual_seed(0)
    model = create_model("small_cnn", dataset.num_classes, int(dataset.images.shape[1]))
    checkpoint = stages.model_checkpoint(model, "small_cnn", dataset.num_classes, int(dataset.images.shape[1]), 0.0)
    return split, checkpoint, dataset.images[torch.from_numpy(ids)]


def run_stage(split: Any, checkpoint: Any, device: str, workers: int, batch_size: int, shard_size: int) -> int:
    """The stage body plus the store's streamed write, as execute_stage does; returns the rows written."""
    from orchestrator.artifacts import ArtifactStore
    from orchestrator.dag import Resources, StageContext
    from pipelines import stages

    ctx = StageContext(run_id="bench", stage="g00/pseudo_label", generation=0, seed=0, device=device, attempt=1)
    if workers > 1:
        from orchestrator import distributed

        ctx.shard_mapper = distributed.actor_pool_mapper(Resources(num_cpus=1, workers=workers))
    params = {"data": DATA, "batch_size": batch_size, "shard_size": shard_size, "generation": 0,
              "io": {"split": "split", "model": "model", "pseudo_labels": "pl"}}
    result = stages.pseudo_label_generation(ctx, {"split": split, "model": checkpoint}, params)
    with tempfile.TemporaryDirectory(prefix="relay-label-") as tmp:
        ArtifactStore(tmp).write_stage("f" * 64, ctx.stage, result)
    return int(result.metrics["rows"])


def run_plain(images: Any, checkpoint: Any, device: str, batch_size: int) -> int:
    """The plain loop: eval mode, inference_mode, softmax per batch, one probability array."""
    import numpy as np
    import torch

    from pipelines.augment import to_float
    from pipelines.stages import load_model

    model = load_model(checkpoint, device)
    chunks = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            logits = model(to_float(images[start : start + batch_size].to(device)))
            chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return int(np.concatenate(chunks).shape[0])


def child(method: str, rows: int, device: str, workers: int, batch_size: int, shard_size: int, repeats: int) -> None:
    """One (method, N) measurement in this fresh process; prints JSON (rows/s median, peak RSS growth)."""
    import torch

    torch.set_num_threads(1)
    split, checkpoint, images = setup(rows, device)
    if workers > 1:
        import ray

        ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False)
    call = (lambda: run_plain(images, checkpoint, device, batch_size)) if method == "plain" else (
        lambda: run_stage(split, checkpoint, device, workers, batch_size, shard_size))
    call()  # warm-up: first-call allocations and (for workers) actor start-up are not throughput
    before = rss_kb("VmRSS")
    reset_peak()
    times, done = _common.repeat(call, repeats)
    peak = rss_kb("VmHWM") - before
    print(json.dumps({"rows": done, "rows_per_s": rows / _common.median(times), "times": times,
                      "peak_rss_growth_mb": peak / 1024, "input_mb": images.numel() / 2**20}))


def measure(method: str, rows: int, args: Any, workers: int = 1) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", method, "--rows", str(rows), "--device", args.device,
               "--workers", str(workers), "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size),
               "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=_common.ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{method} N={rows} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    label = "plain inference_mode loop" if method == "plain" else f"stage + Parquet write, {workers} worker(s)"
    return {"method": label, "rows": rows, "rows_per_s": result["rows_per_s"],
            "peak_rss_growth_mb": result["peak_rss_growth_mb"], "input_mb": result["input_mb"],
            "growth_bytes_per_row": result["peak_rss_growth_mb"] * 2**20 / rows}


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000, help="N; the memory check also runs scale x N")
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="also run the sharded stage on this many actors (>1)")
    p.add_argument("--batch-size", type=int, default=512, help="label.batch_size")
    p.add_argument("--shard-size", type=int, default=2048, help="label.shard_size")
    p.add_argument("--child", choices=("plain", "stage"), help=argparse_help())
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    if args.child:
        child(args.child, args.rows, device, args.workers, args.batch_size, args.shard_size, args.repeats)
        return
    rows = []
    for n in (args.rows, args.rows * args.scale):
        plain, stage = measure("plain", n, args), measure("stage", n, args)
        stage["vs_plain"] = stage["rows_per_s"] / plain["rows_per_s"]
        rows += [plain, stage]
        if args.workers > 1 and sharding_available():
            sharded = measure("stage", n, args, workers=args.workers)
            sharded["vs_plain"] = sharded["rows_per_s"] / plain["rows_per_s"]
            rows.append(sharded)
    columns = ["method", "rows", "rows_per_s", "vs_plain", "input_mb", "peak_rss_growth_mb", "growth_bytes_per_row"]
    _common.report("labeling", f"pseudo-label rows/s and peak memory ({device}, 1 torch thread per worker)", rows,
                   {"goal_vs_plain": GOAL_RATIO, "batch_size": args.batch_size, "shard_size": args.shard_size}, columns)


def sharding_available() -> bool:
    """The sharded stage exists once orchestrator.distributed offers an actor pool (another change adds it)."""
    try:
        from orchestrator import distributed

        return hasattr(distributed, "actor_pool_mapper")
    except ImportError:
        return False


def argparse_help() -> str:
    return "internal: measure one method in this process and print JSON"


if __name__ == "__main__":
    main()
