"""Shared helpers of the benchmarks: timing, tables, JSON results and the in-process pipeline runner.

Files named ``_*.py`` are not run by ``make bench``; every benchmark script imports this one.
The in-process runner is the "plain script" baseline: the same stage functions with the same
params, seeds and thread count as ``orchestrator.engine.body.run_stage_body``, but outputs passed in
memory, no Ray, no MLflow, no artifact store. Keeping it here lets overhead.py (speed) and
science.py (accuracy) share one definition of "the pipeline without the engine".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# RELAY_BENCHMARK_RESULTS moves the JSON elsewhere (a test that runs a benchmark must not touch the repo's)
RESULTS = Path(os.environ.get("RELAY_BENCHMARK_RESULTS") or ROOT / "benchmarks" / "results")
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/ first, not the repo root
    sys.path.insert(0, str(ROOT))


# --- command line and device ------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """Every benchmark takes --device and --repeats; scripts add their own flags."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda runs the GPU variant")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions; the median is reported")
    return p


def device_or_exit(device: str) -> str:
    """The requested device, or exit 0 with the reason when CUDA is asked for but absent.

    Exit 0, not an error: ``make bench`` on a CPU machine must still pass when a user
    tries the GPU variant of one script.
    """
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print("skipped: --device cuda asked for, but torch.cuda.is_available() is False on this machine")
        sys.exit(0)
    return device


def machine() -> dict[str, Any]:
    """Where the numbers come from: they mean little without the core count and the load."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m_at_start": round(load[0], 2),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# --- timing -----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def repeat(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall times of ``repeats`` calls and the last result: the machine is shared, so take medians."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        elapsed, result = timed(fn)
        times.append(elapsed)
    return times, result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


# --- tables and results -----------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table (pasteable into the README's Performance section)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    body = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def write_result(name: str, payload: Mapping[str, Any]) -> Path:
    """benchmarks/results/<name>.json, written to a temp name and renamed (a crash leaves the old file)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    temp = path.with_suffix(".json.tmp")
    data = {"benchmark": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **payload}
    temp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(temp, path)
    return path


def report(
    name: str,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    payload: Mapping[str, Any],
    columns: Sequence[str] | None = None,
) -> None:
    """Print the table and write the JSON: the two things every benchmark must leave behind."""
    print(f"\n## {title}\n")
    print(table(rows, columns))
    path = write_result(name, {"title": title, "rows": list(rows), **payload})
    print(f"\n(wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> list[Any]:
    """``fn(job)`` for every job, in order: in this process, or in ``workers`` fresh (spawned) processes at once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, jobs))


def file_digest(path: str | Path) -> str:
    """A short digest of a file's bytes: part of a cached run's key, so that editing a bundled config (its
    steps, its augmentation) never reuses runs of the old one."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_cached(
    fn: Callable[[Any], dict[str, Any]],
    jobs: Sequence[Any],
    workers: int,
    cache: Path | None,
    cached_only: bool = False,
    key_of: Callable[[Any], Any] = lambda job: job,
) -> list[dict[str, Any]]:
    """``fn(job)`` of every job, in job order; with ``cache`` (JSON lines), finished runs are read back and new
    ones appended as each round of ``workers`` ends, so a long benchmark can be stopped and picked up again.

    ``key_of(job)`` (JSON-serialisable) names a run in the cache; a job whose outcome also depends on a file
    (a config) should put ``file_digest`` of it in its key. ``cached_only`` runs nothing and returns the
    jobs the cache holds (a protocol summarised as far as it got).
    """
    key = [hashlib.sha256(json.dumps(key_of(job)).encode()).hexdigest()[:16] for job in jobs]
    done: dict[str, dict[str, Any]] = {}
    if cache is not None and cache.exists():
        done = {row["key"]: row for row in map(json.loads, cache.read_text().splitlines()) if row}
    todo = [] if cached_only else [i for i in range(len(jobs)) if key[i] not in done]
    for start in range(0, len(todo), max(1, workers)):  # a batch per round, so each round's runs are kept at once
        batch = todo[start : start + max(1, workers)]
        for i, result in zip(batch, run_jobs(fn, [jobs[i] for i in batch], workers)):
            done[key[i]] = {"key": key[i], **result}
            if cache is not None:
                with cache.open("a") as handle:
                    handle.write(json.dumps(done[key[i]]) + "\n")
    return [{k: v for k, v in done[key[i]].items() if k != "key"} for i in range(len(jobs)) if key[i] in done]


# --- the pipeline without the engine ----------------------------------------------------------


def load_config(path: str, overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """(spec, validated config) exactly as `relay run` resolves them."""
    from orchestrator.cli.pipeline_files import load_pipeline_config

    return load_pipeline_config(str(ROOT / path) if not Path(path).is_absolute() else path, list(overrides))


def run_in_process(pipeline: Any, seed: int, device: str = "cpu", run_id: str = "plain") -> dict[str, dict[str, float]]:
    """Every stage of ``pipeline`` in declaration order, in this process; returns metrics by stage.

    Mirrors ``run_stage_body``: the same ``stage_seed``, ``torch.manual_seed`` before the body,
    ``num_cpus`` torch threads and malloc thresholds (``tune_malloc``), so metrics must match a
    `relay run` of the same config exactly.
    Outputs stay in memory (a dict by artifact name) instead of going through Parquet.
    """
    import torch

    from orchestrator.dag import StageContext
    from orchestrator.engine.allocator import tune_malloc
    from orchestrator.engine.fingerprint import stage_seed

    tune_malloc()
    artifacts: dict[str, Any] = {}
    metrics: dict[str, dict[str, float]] = {}
    for stage in pipeline.stages:
        ctx = StageContext(
            run_id=run_id,
            stage=stage.name,
            generation=stage.generation,
            seed=stage_seed(seed, stage.name),
            device=device,
            attempt=1,
        )
        inputs = {name: artifacts[name] for name in stage.inputs}
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(stage.resources.num_cpus)))
        torch.manual_seed(ctx.seed)
        try:
            result = stage.fn(ctx, inputs, stage.params)
        finally:
            torch.set_num_threads(threads)
        artifacts.update({name: materialize(value) for name, value in result.outputs.items()})
        metrics[stage.name] = dict(result.metrics)  # after materializing: streamed outputs fill metrics late
    return metrics


def materialize(value: Any) -> Any:
    """A streamed table output (RecordBatchReader) read into memory; anything else as it is."""
    import pyarrow as pa

    return value.read_all() if isinstance(value, pa.RecordBatchReader) else value


def generation_metrics(metrics: Mapping[str, Mapping[str, float]], key: str = "balanced_accuracy") -> list[float]:
    """``key`` of every ``gNN/evaluate`` stage, in generation order."""
    names = sorted(name for name in metrics if name.endswith("/evaluate"))
    return [float(metrics[name][key]) for name in names]
