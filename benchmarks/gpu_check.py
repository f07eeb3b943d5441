"""`make gpu-check`: the GPU test tier and the GPU variants of the benchmarks, as one table and one JSON.

On a machine where torch sees CUDA it runs, in order (about 3 minutes on one modern GPU; the
Makefile target adds the install):

1. ``pytest tests/gpu``: the tier's tests (counts from a JUnit report; the 2-GPU Ray Train
   test skips, with its reason, on one GPU);
2. training throughput: FixMatch steps (``train_fixmatch``, batch 64 + 2 x 7 x 64 unlabeled
   views) of small_cnn and wrn28_2 on the GPU, in images/s, GPU utilisation sampled meanwhile;
   the same steps without augmentation, and the CPU milliseconds per step the augmentations took;
   each with 1 torch CPU thread (what a 1-CPU training stage gets) and with one per core;
3. labeling: the pseudo-label stage (``benchmarks/labeling.py``'s, Parquet write included) on the
   GPU in one process, then with 2 and k workers sharing the GPU (the stage's process and k - 1
   warm actors, as ``RayExecutor`` runs it), in rows/s, GPU utilisation sampled during each.

Utilisation comes from NVML (``pynvml``, the nvidia-ml-py package) or, without it, from
``nvidia-smi`` polled every 0.1 s. A part that cannot run here (Ray not installed, say) becomes a
row that says why instead of failing the check; failed tests or a part that raises make the exit
code 1. Without CUDA the script says so and exits 0, like every benchmark's ``--device cuda``.

``--device cpu`` is a dry run of the same parts on the CPU (no GPU figures; the JSON is
``gpu_check_cpu.json``): it proves, on any machine, that the check and what it imports work
before a GPU lease is spent on it (a test runs it small).

Usage: python benchmarks/gpu_check.py [--rows 200000] [--steps 50] [--actors 4] [--skip-tests]
       [--device cuda|cpu] [--models small_cnn,wrn28_2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

SAMPLE_EVERY_S = 0.1
COLUMNS = ["check", "value", "unit", "gpu_util_mean_pct", "gpu_util_max_pct", "gpu_mem_max_mb", "note"]


# --- GPU utilisation ---------------------------------------------------------------------------


def parse_nvidia_smi(text: str) -> list[tuple[float, float]]:
    """(utilisation %, memory used MB) per line of ``nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv,noheader,nounits``; lines that are not two numbers ([N/A], blank) are skipped."""
    samples = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            continue
    return samples


def utilisation_summary(samples: list[tuple[float, float]]) -> dict[str, float | None]:
    """Mean and max utilisation and max memory of the samples (None when there are none)."""
    if not samples:
        return {"gpu_util_mean_pct": None, "gpu_util_max_pct": None, "gpu_mem_max_mb": None}
    util = [u for u, _ in samples]
    return {
        "gpu_util_mean_pct": statistics.fmean(util),
        "gpu_util_max_pct": max(util),
        "gpu_mem_max_mb": max(m for _, m in samples),
    }


def _nvml_reader(index: int) -> Callable[[], tuple[float, float]] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # no package, or no driver library: fall back to nvidia-smi
        return None

    def read() -> tuple[float, float]:
        rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
        return float(rates.gpu), pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20

    return read


def _smi_reader(index: int) -> Callable[[], tuple[float, float]] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def read() -> tuple[float, float]:
        samples = parse_nvidia_smi(subprocess.run(query, capture_output=True, text=True, timeout=5).stdout)
        if not samples:
            raise RuntimeError("nvidia-smi gave no sample")
        return samples[0]

    return read


@contextmanager
def sampled(index: int = 0, read: Callable[[], tuple[float, float]] | None = None) -> Iterator[list]:
    """Sample GPU ``index`` (or ``read``) every SAMPLE_EVERY_S on a thread while the block runs.

    Yields the list the samples land in: (utilisation %, memory MB). The first sample is taken
    as the block starts, so even a short block has one; no reader (no NVML, no nvidia-smi)
    leaves the list empty and the row's utilisation blank.
    """
    read = read or _nvml_reader(index) or _smi_reader(index)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def loop() -> None:
        while read is not None:
            try:
                samples.append(read())
            except Exception:
                return
            if stop.wait(SAMPLE_EVERY_S):
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=10)


def row(check: str, value: Any, unit: str, samples: list[tuple[float, float]] | None = None, note: str = "") -> dict:
    return {"check": check, "value": value, "unit": unit, **utilisation_summary(samples or []), "note": note}


# --- 1. the test tier --------------------------------------------------------------------------


def junit_counts(xml_text: str) -> dict[str, int]:
    """passed / failed / skipped counts of a pytest JUnit XML report (errors count as failed)."""
    root = ET.fromstring(xml_text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed, "skipped": total["skipped"]}


def run_tests() -> tuple[dict, bool]:
    with tempfile.TemporaryDirectory(prefix="relay-gpu-tests-") as tmp:
        report = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu", "-rs"]
        started = time.perf_counter()
        done = subprocess.run([*command, f"--junitxml={report}"], cwd=_common.ROOT, text=True)
        elapsed = time.perf_counter() - started
        counts = junit_counts(report.read_text()) if report.exists() else {"passed": 0, "failed": 1, "skipped": 0}
    text = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    ok = done.returncode in (0, 5) and counts["failed"] == 0
    return row("tests/gpu (pytest)", text, "tests", note=f"{elapsed:.0f} s"), ok


# --- 2. training throughput --------------------------------------------------------------------


def training_check(model_name: str, threads: int) -> str:
    """The name of a training row: the model and the torch CPU threads it ran with."""
    return f"training, {model_name}, {threads} CPU thread{'s' if threads > 1 else ''}"


def training_images_per_s(model_name: str, steps: int, device: str = "cuda", threads: int = 1) -> list[dict]:
    """FixMatch steps on the synthetic set on ``device``: images/s over ``steps`` timed steps after 5 untimed,
    the same steps with both views left unaugmented, and the CPU time the augmentations took per step,
    with ``threads`` torch CPU threads (a training stage gets one per CPU it holds: 1 by default).

    Together they say what bounds a step on a GPU: if dropping the augmentations barely changes
    images/s, the CPU's augmentation is not what holds the GPU back; if the thread count moves it,
    the CPU side is (many threads on small CPU tensors wait more than they work).
    """
    import functools

    import torch

    from pipelines.augment import strong_augment, weak_augment
    from pipelines.data import load_dataset
    from pipelines.models import create_model
    from pipelines.training.fixmatch import FixMatchSettings, train_fixmatch

    data = load_dataset("synthetic", None).train
    labeled = torch.cat([torch.nonzero(data.labels == c).flatten()[:20] for c in range(data.num_classes)])
    augmenting = [0.0]

    def timed(augment: Callable) -> Callable:
        def run(images: Any) -> Any:
            started = time.perf_counter()
            out = augment(images)
            augmenting[0] += time.perf_counter() - started
            return out

        return run

    def fit(n: int, augmented: bool = True) -> None:
        torch.manual_seed(0)
        model = create_model(model_name, data.num_classes, int(data.images.shape[1]))
        settings = FixMatchSettings(steps=n)
        weak, strong = functools.partial(weak_augment, flip=False), functools.partial(strong_augment, magnitude=9)
        if not augmented:
            weak = strong = torch.clone  # the same batches and copies, no augmentation
        images, targets = data.images[labeled], data.labels[labeled]
        generator = torch.Generator().manual_seed(0)
        train_fixmatch(model, images, targets, data.images, 10, settings, timed(weak), timed(strong), device, generator)
        if device == "cuda":
            torch.cuda.synchronize()

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fit(5)  # cudnn autotuning, allocator growth
        augmenting[0] = 0.0
        with sampled() as samples:
            seconds, _ = _common.timed(lambda: fit(steps))
        augment_ms = 1000 * augmenting[0] / steps
        with sampled() as plain_samples:
            plain_seconds, _ = _common.timed(lambda: fit(steps, augmented=False))
    finally:
        torch.set_num_threads(before)
    per_step = FixMatchSettings(steps=1).batch_size * (1 + 2 * FixMatchSettings(steps=1).unlabeled_ratio)
    note = f"{steps} steps x {per_step} images (B + 2 mu B), strong views augmented on the CPU"
    step_ms = 1000 * seconds / steps
    name = training_check(model_name, threads)
    return [
        row(name, steps * per_step / seconds, "images/s", samples, note),
        row(
            f"{name}, no augmentation",
            steps * per_step / plain_seconds,
            "images/s",
            plain_samples,
            "the same steps, both views the raw batch",
        ),
        row(
            f"{name}: augmentation",
            augment_ms,
            "ms/step",
            note=f"{augment_ms / step_ms:.0%} of a {step_ms:.1f} ms step (weak x 2 + strong, in the training process)",
        ),
    ]


# --- 3. labeling -------------------------------------------------------------------------------


def labeling_rows(rows: int, actors: int, device: str = "cuda") -> list[dict]:
    """The pseudo-label stage on ``device``: in one process, then with 2 and ``actors`` workers sharing the GPU."""
    import labeling  # benchmarks/labeling.py: the same stage call, Parquet write and digest included

    args = argparse.Namespace(device=device, batch_size=512, shard_size=8192)
    split, checkpoint, _ = labeling.setup(rows)
    labeling.run_stage(split.slice(0, args.shard_size), checkpoint, args)  # warm-up
    with sampled() as samples:
        seconds, _ = _common.timed(lambda: labeling.run_stage(split, checkpoint, args))
    out = [row("labeling stage, 1 process", rows / seconds, "rows/s", samples, f"{rows} rows, Parquet write included")]
    try:
        import ray
    except ImportError:
        return [
            *out,
            row("labeling on actors", "skipped", "", note="ray is not installed (pip install 'ray[default]')"),
        ]
    labeling.start_ray([1, actors])
    try:
        out += actor_rows(labeling, split, checkpoint, args, rows, actors)
    finally:
        ray.shutdown()
    return out


def actor_rows(labeling: Any, split: Any, checkpoint: Any, args: Any, rows: int, actors: int) -> list[dict]:
    """The stage with 2 and ``actors`` workers: this process (the stage's task) and k - 1 warm actors."""
    out = []
    for k in sorted({2, actors}):
        pool = labeling.start_pool(k, args.device)
        mapper = pool.mapper(local=True)
        labeling.run_stage(split, checkpoint, args, mapper)  # the pool's first call: actors start
        with sampled() as samples:
            seconds, _ = _common.timed(lambda mapper=mapper: labeling.run_stage(split, checkpoint, args, mapper))
        on_gpu = args.device == "cuda"
        share = f"{1 / k:.2g} GPU each" if on_gpu else "1 CPU each"
        note = f"the stage's process and {k - 1} warm actor{'s' if k > 2 else ''}, {share}"
        out.append(
            row(
                f"labeling stage, {k} workers{' sharing the GPU' if on_gpu else ''}",
                rows / seconds,
                "rows/s",
                samples,
                note,
            )
        )
        pool.shutdown()
    return out


# --- the check ---------------------------------------------------------------------------------


def guarded(name: str, part: Callable[[], list[dict]]) -> tuple[list[dict], bool]:
    """Run one part; an exception becomes a failed row (the other parts still run)."""
    try:
        return part(), True
    except Exception as exc:
        return [row(name, "FAILED", "", note=f"{type(exc).__name__}: {exc}"[:300])], False


def report(rows: list[dict], ok: bool, machine_note: str, name: str = "gpu_check") -> None:
    """One Markdown table and benchmarks/results/<name>.json."""
    _common.report(name, f"GPU check ({machine_note})", rows, {"ok": ok}, COLUMNS)
    print(f"\ngpu-check: {'OK' if ok else 'FAILED'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000, help="rows labeled per labeling call")
    p.add_argument("--steps", type=int, default=50, help="timed training steps per model")
    p.add_argument("--actors", type=int, default=4, help="k workers sharing the GPU (besides 2)")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run of every part")
    p.add_argument("--models", default="small_cnn,wrn28_2", help="comma-separated models whose training is timed")
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    rows, ok = [], True
    if not args.skip_tests:
        tests, ok = run_tests()
        rows.append(tests)
    for model_name in args.models.split(","):
        for threads in sorted({1, os.cpu_count() or 1}):
            part, fine = guarded(
                training_check(model_name, threads),
                lambda m=model_name, t=threads: training_images_per_s(m, args.steps, device, t),
            )
            rows, ok = rows + part, ok and fine
    part, fine = guarded("labeling", lambda: labeling_rows(args.rows, max(2, args.actors), device))
    rows, ok = rows + part, ok and fine
    report(rows, ok, machine_note(device), "gpu_check" if device == "cuda" else "gpu_check_cpu")
    sys.exit(0 if ok else 1)


def machine_note(device: str) -> str:
    """What the table's figures come from: the GPU and its count, or that it is the CPU dry run."""
    import torch

    if device == "cpu":
        return f"CPU dry run, no GPU figures, {os.cpu_count()} CPUs"
    return f"{torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s), {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
