"""Pseudo-labeling throughput and memory: the stage (through the Parquet write) vs a plain inference loop.

The stage side is ``pipelines.stages.pseudo_label.pseudo_label_generation`` with a StageContext, its output
consumed by ``ArtifactStore.write_stage`` (the streamed Parquet write, digest and manifest),
exactly as ``run_stage_body`` runs it. The plain side is a ``torch.inference_mode`` loop that
gathers the same unlabeled images from the same dataset by id, runs the same model and batch size,
and keeps the probabilities in one array. Both use one torch thread (a 1-CPU stage).

Workers: the stage with k > 1 workers labels shards in its own process and on an ``ActorPool``
of k - 1 1-CPU actors, as ``RayExecutor`` runs it (orchestrator/engine/actor_pool.py,
``map_on_actors(local=True)``); this process plays the stage's task. k runs over ``--workers``
(default: 2, 4 and 8, those the machine has the cores for). Each k is timed two ways: "cold",
the first call, which starts the k - 1 actors inside the timed call (a pool that lives for one
stage call); and "warm", later calls on the same actors (a pool kept for the run: what `relay
run` gets on a node with k CPUs beside a 1-CPU training stage, where all k - 1 are kept
(``kept_actors.kept_workers``) and start beside the run's first stage). Speed-up is against the
1-worker stage, from the stage's start. Goal: k workers >= 0.9 k x one worker at
200k rows on k free cores.

Where the time goes (``--profile``, at the larger N): one process times the labeling
itself (ShardLabeler over every shard, in-process), the model load, the Parquet write with no
digest, the digest of the written bytes, a pool's start until every actor answers, and for
one warm k-worker call the CPU seconds of this process (the stage's task) and of each actor (from /proc), so that
what the cores spent can be told from what they waited for.

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

Goals: stage >= 0.95 x plain rows/s with 1 worker; stage memory flat in N.

Usage: python benchmarks/labeling.py [--rows 20000] [--scale 10] [--repeats 3] [--workers 2 4 8] [--no-profile]
"""

from __future__ import annotations

import functools
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
GOAL_SCALING = 0.9  # k workers >= 0.9 k x one worker
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


def as_stage_process() -> None:
    """Set this process up as a stage's (one torch thread, ``tune_malloc``), so the plain loop, the
    in-process stage and the actors all run on the same allocator settings and compare code with code."""
    import torch

    from orchestrator.engine.allocator import tune_malloc

    torch.set_num_threads(1)
    tune_malloc()


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


def stage_params(args: Any) -> dict[str, Any]:
    return {
        "data": data_section(),
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
        "generation": 0,
        "io": {"split": "split", "model": "model", "pseudo_labels": "pl"},
    }


def run_stage(split: Any, checkpoint: Any, args: Any, mapper: Any = None) -> int:
    """The stage body plus the store's streamed write, as run_stage_body does; returns the rows written.

    ``mapper`` is an actor pool's ``ctx.map_shards`` (k workers); None maps in this process (1 worker).
    """
    from orchestrator.dag import StageContext
    from orchestrator.engine.artifacts import ArtifactStore
    from pipelines.stages.pseudo_label import pseudo_label_generation

    ctx = StageContext(run_id="bench", stage="g00/pseudo_label", generation=0, seed=0, device=args.device, attempt=1)
    if mapper is not None:
        ctx.shard_mapper = mapper
    result = pseudo_label_generation(ctx, {"split": split, "model": checkpoint}, stage_params(args))
    with tempfile.TemporaryDirectory(prefix="relay-label-") as tmp:
        ArtifactStore(tmp).write_stage("f" * 64, ctx.stage, result)
    return int(result.metrics["rows"])


def run_plain(ids: Any, checkpoint: Any, device: str, batch_size: int) -> int:
    """The plain loop: gather the images by id, eval mode, inference_mode, softmax per batch, one array."""
    import numpy as np
    import torch

    from pipelines.models import to_float
    from pipelines.stages.common import dataset_of, load_model

    images = dataset_of(data_section()).train.images[torch.from_numpy(ids)]
    model = load_model(checkpoint, device)
    chunks = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            logits = model(to_float(images[start : start + batch_size].to(device)))
            chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return int(np.concatenate(chunks).shape[0])


def start_pool(k: int, device: str) -> Any:
    """The k - 1 actors the executor starts for a sharded stage with workers=k (a GPU shared by all on cuda)."""
    from orchestrator.dag import Resources
    from orchestrator.engine.actor_pool import ActorPool

    return ActorPool.start(Resources(num_cpus=1, num_gpus=1 / k if device == "cuda" else 0.0, workers=k), count=k - 1)


def start_ray(workers: list[int]) -> None:
    """One local Ray instance with a CPU for every actor of every pool (idle actors use no core)."""
    import ray

    # address="local": a bare ray.init joins the cluster a stale <ray temp dir>/ray_current_cluster names
    ray.init(address="local", num_cpus=max(2, sum(workers)), include_dashboard=False, log_to_driver=False)


def child_speed(args: Any) -> None:
    """Every method at N rows in this one process (the k-worker stage's task): cold calls first, then warm ones."""
    as_stage_process()
    split, checkpoint, ids = setup(args.rows)
    small = min(args.rows, args.shard_size)
    run_plain(ids[:small], checkpoint, args.device, args.batch_size)  # warm-up: lazy imports, first allocations
    run_stage(split.slice(0, small), checkpoint, args)
    methods = {
        "plain": lambda: run_plain(ids, checkpoint, args.device, args.batch_size),
        "stage_1": lambda: run_stage(split, checkpoint, args),
    }
    cold: dict[str, float] = {}
    pools = {}
    if args.workers:
        start_ray(args.workers)
    for k in args.workers:
        started = time.perf_counter()
        pools[k] = start_pool(k, args.device)
        run_stage(split, checkpoint, args, pools[k].mapper(local=True))
        cold[f"stage_{k}"] = time.perf_counter() - started
        methods[f"stage_{k}"] = functools.partial(run_stage, split, checkpoint, args, pools[k].mapper(local=True))
    names = list(methods)
    wall: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, args.repeats)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            elapsed, _ = _common.timed(methods[name])
            wall[name].append(elapsed)
    print(json.dumps({"wall": wall, "cold": cold, "loadavg": os.getloadavg()[0]}))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ray_processes() -> list[int]:
    """Pids of the processes Ray started (raylet, GCS, workers): their command line names Ray (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue
            if b"/ray/" in command or b"ray::" in command:
                found.append(int(entry.name))
    return found


def idle_cpu_seconds() -> float:
    """Seconds every core of the machine spent idle since boot (Linux /proc/stat: idle + iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def child_profile(args: Any) -> None:
    """Where a k-worker stage's time goes at N rows; prints JSON of seconds per part."""
    import ray

    from orchestrator.engine.parquet import write_parquet
    from pipelines.pseudo_label import pseudo_label_schema
    from pipelines.stages.common import load_model
    from pipelines.stages.pseudo_label import ShardLabeler, unlabeled_shards

    as_stage_process()
    k = max(args.workers or [2])
    split, checkpoint, _ = setup(args.rows)
    parts: dict[str, float] = {}
    parts["model load"], _ = _common.timed(lambda: load_model(checkpoint, args.device))
    label = ShardLabeler(data_section(), checkpoint, args.batch_size, 0, "m", args.device)
    cpu_before = time.process_time()
    parts["labeling, in-process (all shards)"], batches = _common.timed(
        lambda: [label(shard)[0] for shard in unlabeled_shards(split, args.shard_size)]
    )
    parts["  its CPU"] = time.process_time() - cpu_before
    parts.update(profile_write(batches, pseudo_label_schema(checkpoint["num_classes"]), write_parquet))
    start_ray([k])
    started = time.perf_counter()
    pool = start_pool(k, args.device)
    boxed = [ray.put(_pid)]
    pids = sorted(ray.get([actor.run.remote("pid", boxed, 0) for actor in pool.actors]))
    parts[f"pool start, {k - 1} actors (until each answers)"] = time.perf_counter() - started
    run_stage(split, checkpoint, args, pool.mapper(local=True))  # the first call: each actor loads model and data
    ray_others = [pid for pid in ray_processes() if pid not in pids and pid != os.getpid()]
    before = {pid: cpu_seconds(pid) for pid in [os.getpid(), *pids, *ray_others]}
    idle_before = idle_cpu_seconds()
    parts[f"warm stage call, {k} workers (wall)"], _ = _common.timed(
        lambda: run_stage(split, checkpoint, args, pool.mapper(local=True))
    )
    parts["  cores idle in that call (CPU seconds, whole machine)"] = idle_cpu_seconds() - idle_before
    spent = {pid: cpu_seconds(pid) - before[pid] for pid in before}
    parts["  stage task CPU in that call (its shards, the actors' out and in, write, digest)"] = spent.pop(os.getpid())
    parts[f"  actor CPU in that call (sum over {k - 1})"] = sum(spent.pop(pid) for pid in pids)
    parts["  Ray's own processes' CPU in that call (raylet, GCS, idle workers)"] = sum(spent.values())
    print(json.dumps({"parts": parts, "rows": args.rows, "workers": k, "loadavg": os.getloadavg()[0]}))


def profile_write(batches: list[Any], schema: Any, write_parquet: Any) -> dict[str, float]:
    """The store's Parquet write with no digest, and the digest of the same bytes on their own."""
    import io

    import pyarrow as pa

    from orchestrator.engine.parquet import HashingSink

    class Plain(HashingSink):
        def write(self, data: Any) -> int:  # the sink without the hash
            view = memoryview(data)
            self.size += view.nbytes
            self._stream.write(data)
            return view.nbytes

    buffer = io.BytesIO()
    reader = lambda: pa.RecordBatchReader.from_batches(schema, iter(batches))  # noqa: E731
    write_s, _ = _common.timed(lambda: write_parquet(Plain(buffer), reader(), "pl"))
    data = buffer.getvalue()
    digest_s, _ = _common.timed(lambda: HashingSink(io.BytesIO()).write(data))
    return {"Parquet write, no digest": write_s, f"digest of the {len(data) / 2**20:.0f} MB written": digest_s}


def _pid(_: Any) -> int:
    return os.getpid()


def child_memory(args: Any) -> None:
    """One method at N rows in this fresh process: peak RSS growth of one call after a one-shard warm-up."""
    as_stage_process()
    split, checkpoint, ids = setup(args.rows)
    small = min(args.rows, args.shard_size)
    one_worker = {
        "plain": lambda part, part_ids: run_plain(part_ids, checkpoint, args.device, args.batch_size),
        "stage": lambda part, part_ids: run_stage(part, checkpoint, args),
    }[args.child]
    one_worker(split.slice(0, small), ids[:small])
    call = functools.partial(one_worker, split, ids)
    before = rss_kb("VmRSS")
    if not reset_peak():
        raise SystemExit("cannot reset VmHWM (/proc/self/clear_refs); the memory check needs Linux >= 4.0")
    done = call()
    print(json.dumps({"rows": done, "peak_rss_growth_mb": (rss_kb("VmHWM") - before) / 1024}))


def spawn(args: Any, mode: str, rows: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--rows", str(rows), "--device", args.device]
    command += ["--workers", *map(str, args.workers)] if args.workers else ["--workers"]
    command += ["--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)]
    command += ["--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=_common.ROOT, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{mode} N={rows} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def label_of(name: str) -> str:
    if name == "plain":
        return "plain inference_mode loop"
    k = int(name.split("_")[1])
    return f"stage + Parquet write, {k} worker{'s' if k > 1 else ''}"


def speed_rows(n: int, speed: dict[str, Any], memory: dict[tuple[str, int], float]) -> list[dict[str, Any]]:
    """One row per method at N rows: warm rows/s, against plain and against the 1-worker stage, and cold."""
    wall = {name: _common.median(times) for name, times in speed["wall"].items()}
    rows = []
    for name, seconds in wall.items():
        k = 1 if name == "plain" else int(name.split("_")[1])
        cold = speed["cold"].get(name)
        rows.append(
            {
                "method": label_of(name),
                "workers": k,
                "rows": n,
                "rows_per_s": n / seconds,
                "vs_plain": wall["plain"] / seconds,
                "speedup": wall["stage_1"] / seconds if name != "plain" else None,
                "speedup_cold": wall["stage_1"] / cold if cold else None,
                "actor_start_s": cold - seconds if cold else None,
                "peak_rss_growth_mb": memory.get(({"stage_1": "stage"}.get(name, name), n)),
                "loadavg": speed["loadavg"],
            }
        )
    return rows


def measure(args: Any, sizes: list[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The table rows (method x N) and the verdicts."""
    speed = {n: spawn(args, "speed", n) for n in sizes}
    memory = {(m, n): spawn(args, m, n, MEMORY_ENV)["peak_rss_growth_mb"] for n in sizes for m in ("plain", "stage")}
    rows = [row for n in sizes for row in speed_rows(n, speed[n], memory)]
    n, big = sizes
    verdicts: dict[str, Any] = {}
    for name in speed[n]["wall"]:
        t_small, t_big = _common.median(speed[n]["wall"][name]), _common.median(speed[big]["wall"][name])
        verdicts[f"{name}_fixed_s"] = (big * t_small - n * t_big) / (big - n)
        verdicts[f"{name}_marginal_rows_per_s"] = (big - n) / max(t_big - t_small, 1e-9)
    for name in ("plain", "stage"):
        verdicts[f"{name}_growth_bytes_per_row"] = (memory[(name, big)] - memory[(name, n)]) * 2**20 / (big - n)
    stage_ratios = [row["vs_plain"] for row in rows if row["workers"] == 1 and row["method"] != label_of("plain")]
    verdicts["speed_goal_met"] = min(stage_ratios) >= GOAL_RATIO
    verdicts["memory_flat"] = verdicts["stage_growth_bytes_per_row"] < FLAT_BYTES_PER_ROW
    for row in rows:
        if row["rows"] == big and row["workers"] > 1:
            k = row["workers"]
            verdicts[f"scaling_{k}_warm_goal_met"] = row["speedup"] >= GOAL_SCALING * k
            verdicts[f"scaling_{k}_cold_goal_met"] = row["speedup_cold"] >= GOAL_SCALING * k
    return rows, verdicts


def default_workers() -> list[int]:
    """k = 2, 4, 8: those this machine has the cores for (at least 2)."""
    return [k for k in (2, 4, 8) if k <= max(2, os.cpu_count() or 1)]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000, help="N; speed and memory also run at scale x N")
    p.add_argument("--scale", type=int, default=10)
    p.add_argument(
        "--workers",
        type=int,
        nargs="*",
        help="k > 1 workers (the stage's task and k - 1 actors) to time the sharded stage on (default 2 4 8, up to the cores)",
    )
    p.add_argument("--batch-size", type=int, default=512, help="label.batch_size")
    p.add_argument("--shard-size", type=int, default=2048, help="label.shard_size")
    p.add_argument("--no-profile", action="store_true", help="skip the where-the-time-goes breakdown")
    p.add_argument("--child", choices=("speed", "profile", "plain", "stage"), help="internal: one measurement")
    args = p.parse_args()
    args.device = _common.device_or_exit(args.device)
    args.workers = sorted({k for k in (default_workers() if args.workers is None else args.workers) if k > 1})
    if args.child in ("speed", "profile"):
        {"speed": child_speed, "profile": child_profile}[args.child](args)
        return
    if args.child:
        child_memory(args)
        return
    if args.scale < 2:
        p.error("--scale must be >= 2: flatness compares N with scale x N rows")
    big = args.rows * args.scale
    rows, verdicts = measure(args, [args.rows, big])
    profile = None if args.no_profile else spawn(args, "profile", big)
    columns = ["method", "rows", "rows_per_s", "vs_plain", "speedup", "speedup_cold"]
    columns += ["actor_start_s", "peak_rss_growth_mb", "loadavg"]
    _common.report(
        "labeling",
        f"pseudo-label rows/s and peak memory ({args.device}, 1 torch thread per worker; speedup: warm pool, "
        "speedup_cold: the k - 1 actors started in the call)",
        rows,
        {
            "goal_vs_plain": GOAL_RATIO,
            "goal_scaling": GOAL_SCALING,
            "flat_bytes_per_row": FLAT_BYTES_PER_ROW,
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
            "repeats": args.repeats,
            "memory_env": MEMORY_ENV,
            "profile": profile,
            **verdicts,
        },
        columns,
    )
    if profile is not None:
        print(f"\n### where the time goes ({profile['rows']} rows, load {profile['loadavg']:.1f})\n")
        print(_common.table([{"part": part, "seconds": s} for part, s in profile["parts"].items()]))
    print("\n" + "\n".join(f"{key}: {_common._cell(value)}" for key, value in verdicts.items()))


if __name__ == "__main__":
    main()
