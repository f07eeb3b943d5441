"""FixMatch vs CReST vs CReST+ on long-tailed digits: does rebalanced self-training help the tail?

Protocol (docs/ALGORITHMS.md: Long-tailed splits, FixMatch, CReST and CReST+), run through the
pipeline's own stage functions in-process (``_common.run_in_process``: same seeds as `relay run`,
no engine) for speed:

- data: the demo's split (digits, balanced test of 40/class, head_count 130, gamma 10, beta 0.2)
  unless overridden; seed i uses ``seed=i`` and ``data.fold=i`` (a new split and a new init).
- FixMatch = ``crest.generations=1 crest.alignment=false``; CReST = G generations without
  alignment; CReST+ = G generations with alignment. Comparison at EQUAL STEPS PER GENERATION
  (the paper's protocol: every generation retrains with the full schedule), so CReST gets G times
  FixMatch's compute; ``--compute-matched`` adds FixMatch trained G x steps, the honest control.
- Reported: balanced accuracy and tail recall (mean recall of the 30% rarest labeled classes) of
  the LAST generation (no selection on the test set), mean and sample std over seeds.

Usage: python benchmarks/science.py [--seeds 3] [--jobs 2] [--compute-matched] [key=value ...]
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

CONFIG = "pipelines/configs/crest_digits.yaml"
PAPER = {  # CIFAR10-LT gamma 100, beta 10% (docs/ALGORITHMS.md, CReST and CReST+): the direction to compare with
    "FixMatch": 66.3,
    "CReST": 75.9,
    "CReST+": 78.1,
}


def methods(generations: int, steps: int, compute_matched: bool) -> dict[str, list[str]]:
    """Overrides per method; every method shares the data, model and per-generation schedule."""
    found = {
        "FixMatch": ["crest.generations=1", "crest.alignment=false"],
        "CReST": [f"crest.generations={generations}", "crest.alignment=false"],
        "CReST+": [f"crest.generations={generations}", "crest.alignment=true"],
    }
    if compute_matched:
        found[f"FixMatch x{generations} steps"] = [
            "crest.generations=1",
            "crest.alignment=false",
            f"train.steps={steps * generations}",
        ]
    return found


def run_one(job: tuple[str, int, list[str], str]) -> dict[str, Any]:
    """One (method, seed) pipeline in a fresh process: per-generation balanced accuracy and tail recall."""
    method, seed, overrides, device = job
    _, config = _common.load_config(CONFIG, [*overrides, f"seed={seed}", f"data.fold={seed}"])
    from pipelines.builders import crest

    elapsed, metrics = _common.timed(lambda: _common.run_in_process(crest.build(config), config.seed, device))
    return {
        "method": method,
        "seed": seed,
        "seconds": elapsed,
        "balanced_accuracy": _common.generation_metrics(metrics, "balanced_accuracy"),
        "tail_recall": _common.generation_metrics(metrics, "tail_recall"),
        "pick_accuracy": [m["picks_accuracy"] for k, m in sorted(metrics.items()) if k.endswith("/rebalance")],
    }


def summarize(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Mean and spread of the last generation per method, plus the mean per-generation curve."""
    rows = []
    for name in names:
        mine = [r for r in runs if r["method"] == name]
        bal = [100 * r["balanced_accuracy"][-1] for r in mine]
        tail = [100 * r["tail_recall"][-1] for r in mine]
        curve = [
            sum(r["balanced_accuracy"][g] for r in mine) / len(mine) * 100
            for g in range(len(mine[0]["balanced_accuracy"]))
        ]
        rows.append(
            {
                "method": name,
                "seeds": len(mine),
                "bal_acc_mean": statistics.mean(bal),
                "bal_acc_std": _common.spread(bal),
                "tail_recall_mean": statistics.mean(tail),
                "tail_recall_std": _common.spread(tail),
                "bal_acc_per_gen": " ".join(f"{v:.1f}" for v in curve),
                "paper_cifar10lt_g100": PAPER.get(name, "-"),
            }
        )
    return rows


def verdict(rows: list[dict[str, Any]]) -> str:
    """Is CReST+ above FixMatch by more than the seed spread (the issue's goal)?"""
    by = {r["method"]: r for r in rows}
    gain = by["CReST+"]["bal_acc_mean"] - by["FixMatch"]["bal_acc_mean"]
    noise = max(by["CReST+"]["bal_acc_std"], by["FixMatch"]["bal_acc_std"])
    tail_gain = by["CReST+"]["tail_recall_mean"] - by["FixMatch"]["tail_recall_mean"]
    ok = gain > noise
    return (
        f"CReST+ - FixMatch: balanced accuracy {gain:+.1f} pts (seed std {noise:.1f}), tail recall "
        f"{tail_gain:+.1f} pts: goal {'MET' if ok else 'MISSED'}"
    )


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="pipelines run side by side (one torch thread each)")
    p.add_argument("--compute-matched", action="store_true", help="add FixMatch with G x steps")
    p.add_argument("--name", default="science", help="results/<name>.json")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every method, e.g. train.steps=300")
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    _, base = _common.load_config(CONFIG, args.overrides)
    table = methods(base.crest.generations, base.train.steps, args.compute_matched)
    jobs = [
        (name, seed, [*args.overrides, *overrides], device)
        for seed in range(args.seeds)
        for name, overrides in table.items()
    ]
    elapsed, runs = _common.timed(lambda: _run_all(jobs, args.jobs))
    rows = summarize(runs, list(table))
    note = verdict(rows)
    _common.report(
        args.name,
        f"FixMatch vs CReST vs CReST+ on long-tailed digits (last generation, %, {args.seeds} seeds)",
        rows,
        {
            "overrides": args.overrides,
            "runs": runs,
            "verdict": note,
            "wall_s": elapsed,
            "protocol": "equal steps per generation; seed i = seed i + data.fold i; last generation",
        },
    )
    print(f"\n{note}\n(total {elapsed:.0f} s)")


def _run_all(jobs: list[tuple[str, int, list[str], str]], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        return [run_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_one, jobs))


if __name__ == "__main__":
    main()
