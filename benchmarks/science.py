"""FixMatch vs CReST vs CReST+ on long-tailed digits: does rebalanced self-training help the tail?

Protocol (docs/ALGORITHMS.md: Long-tailed splits, FixMatch, CReST and CReST+), run through the
pipeline's own stage functions in-process (``_common.run_in_process``: same seeds as `relay run`,
no engine) for speed:

- data: the demo config's split unless overridden; seed i uses ``seed=i`` and ``data.fold=i`` (a
  new split and a new init) and, with ``--class-order per-seed`` (the default), ``data.class_order``
  drawn from i: which digits are the head and which the tail changes with the seed (the demo
  config's identity order makes 7, 8, 9 the tail in every seed; ``--class-order identity`` keeps it).
- FixMatch = ``crest.generations=1 crest.alignment=false``; CReST = G generations without
  alignment; CReST+ = G generations with alignment. Comparison at EQUAL STEPS PER GENERATION
  (the paper's protocol: every generation retrains with the full schedule), so CReST gets G times
  FixMatch's compute; ``--compute-matched`` adds FixMatch trained G x steps, the honest control.
- FixMatch is read from CReST's generation 0: the same pipeline prefix (same split, stage seeds,
  and a generation-0 train stage with alignment off and temperature 1 whatever G), so the same
  numbers; ``--separate-fixmatch`` trains it on its own.
- Reported: balanced accuracy and tail recall (mean recall of the 30% rarest labeled classes) of
  the LAST generation (no selection on the test set), mean and sample std over seeds, and each
  method against FixMatch (and the compute-matched FixMatch) paired by seed.
- ``--cache FILE`` keeps every finished (method, seed, settings) run as a JSON line, so a protocol
  can be run a few seeds at a time and summarised once at the end.

Usage: python benchmarks/science.py [--seeds 3] [--jobs 2] [--compute-matched] [key=value ...]
"""

from __future__ import annotations

import statistics
import sys
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


def class_order(seed: int, num_classes: int = 10) -> list[int]:
    """The per-seed class order: rank k of the long tail is class ``order[k]`` (rank 0 the head)."""
    import numpy as np

    return [int(c) for c in np.random.default_rng(1_000 + seed).permutation(num_classes)]


def seed_overrides(seed: int, order: str) -> list[str]:
    """What seed i means: seed=i, data.fold=i and (per-seed order) data.class_order drawn from i."""
    found = [f"seed={seed}", f"data.fold={seed}"]
    if order == "per-seed":
        found.append(f"data.class_order={class_order(seed)}")
    elif order != "identity":
        raise ValueError(f"class order: expected per-seed or identity, got {order!r}")
    return found


def run_one(job: tuple[str, int, list[str], str, str]) -> dict[str, Any]:
    """One (method, seed) pipeline in a fresh process: per-generation balanced accuracy and tail recall."""
    method, seed, overrides, device, order = job
    _, config = _common.load_config(CONFIG, [*overrides, *seed_overrides(seed, order)])
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


def paired(runs: list[dict[str, Any]], method: str, baseline: str) -> dict[str, Any] | None:
    """``method - baseline`` per seed (last generation, points): mean, sample std, seeds with a gain."""
    by = {(r["method"], r["seed"]): r for r in runs}
    seeds = sorted(s for (m, s) in by if m == method and (baseline, s) in by)
    if not seeds:
        return None
    diff = {
        key: [100 * (by[(method, s)][key][-1] - by[(baseline, s)][key][-1]) for s in seeds]
        for key in ("balanced_accuracy", "tail_recall")
    }
    return {
        "pair": f"{method} - {baseline}",
        "seeds": seeds,
        "bal_acc_mean": statistics.mean(diff["balanced_accuracy"]),
        "bal_acc_std": _common.spread(diff["balanced_accuracy"]),
        "tail_recall_mean": statistics.mean(diff["tail_recall"]),
        "tail_recall_std": _common.spread(diff["tail_recall"]),
        "positive_seeds": sum(d > 0 for d in diff["balanced_accuracy"]),
        "per_seed_bal_acc": [round(d, 1) for d in diff["balanced_accuracy"]],
        "per_seed_tail_recall": [round(d, 1) for d in diff["tail_recall"]],
    }


def verdict(runs: list[dict[str, Any]]) -> str:
    """CReST+ against FixMatch, paired by seed (issue 14's goal: >= +5 balanced, >= +15 tail, every seed)."""
    pair = paired(runs, "CReST+", "FixMatch")
    if pair is None:
        return "CReST+ - FixMatch: not measured"
    ok = pair["bal_acc_mean"] >= 5 and pair["tail_recall_mean"] >= 15 and pair["positive_seeds"] == len(pair["seeds"])
    return (
        f"CReST+ - FixMatch, paired: {pair['bal_acc_mean']:+.1f} +- {pair['bal_acc_std']:.1f} balanced, "
        f"{pair['tail_recall_mean']:+.1f} +- {pair['tail_recall_std']:.1f} tail, positive in "
        f"{pair['positive_seeds']} of {len(pair['seeds'])} seeds: goal {'MET' if ok else 'MISSED'}"
    )


def all_pairs(runs: list[dict[str, Any]], table: dict[str, list[str]], generations: int) -> list[dict[str, Any]]:
    """Every method against FixMatch, and CReST / CReST+ against the compute-matched FixMatch when it ran."""
    wanted = [(m, "FixMatch") for m in table if m != "FixMatch"]
    matched = f"FixMatch x{generations} steps"
    if matched in table:
        wanted += [("CReST", matched), ("CReST+", matched)]
    return [p for p in (paired(runs, m, b) for m, b in wanted if m in table) if p is not None]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--jobs", type=int, default=2, help="pipelines run side by side (one torch thread each)")
    p.add_argument("--compute-matched", action="store_true", help="add FixMatch with G x steps")
    p.add_argument("--name", default="science", help="results/<name>.json")
    p.add_argument(
        "--class-order",
        default="per-seed",
        choices=("per-seed", "identity"),
        help="per-seed: data.class_order drawn from the seed (the protocol); identity: the config's order",
    )
    p.add_argument(
        "--separate-fixmatch",
        action="store_true",
        help="train FixMatch on its own instead of reading CReST's generation 0 (the same pipeline prefix)",
    )
    p.add_argument("--cache", default="", help="JSON lines of finished runs, reused when the same run is asked again")
    p.add_argument("--cached-only", action="store_true", help="summarise the runs in --cache, run nothing")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every method, e.g. train.steps=300")
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    _, base = _common.load_config(CONFIG, args.overrides)
    table = methods(base.crest.generations, base.train.steps, args.compute_matched)
    derive = "CReST" in table and not args.separate_fixmatch
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    matched = f"FixMatch x{base.crest.generations} steps"
    jobs = [  # every seed's CReST and CReST+ first: an interrupted protocol still pairs them over most seeds
        (name, seed, [*args.overrides, *overrides], device, args.class_order)
        for last in (False, True)
        for seed in seeds
        for name, overrides in table.items()
        if (name == matched) == last and not (derive and name == "FixMatch")
    ]
    cache = Path(args.cache) if args.cache else None
    elapsed, runs = _common.timed(
        lambda: _common.run_cached(run_one, jobs, args.jobs, cache, args.cached_only, key_of=science_key)
    )
    if derive:
        runs += [fixmatch_of(r) for r in runs if r["method"] == "CReST"]
    rows = summarize(runs, [name for name in table if any(r["method"] == name for r in runs)])
    note = verdict(runs)
    pairs = all_pairs(runs, table, base.crest.generations)
    order = " + data.class_order drawn from i" if args.class_order == "per-seed" else ""
    _common.report(
        args.name,
        f"FixMatch vs CReST vs CReST+ on long-tailed digits (last generation, %, {args.seeds} seeds)",
        rows,
        {
            "overrides": args.overrides,
            "paired": pairs,
            "runs": runs,
            "verdict": note,
            "wall_s": elapsed,
            "class_order": args.class_order,
            "protocol": f"equal steps per generation; seed i = seed i + data.fold i{order}; last generation",
        },
    )
    print("\n" + _common.table([{k: v for k, v in p.items() if k != "seeds"} for p in pairs]))
    print(f"\n{note}\n(total {elapsed:.0f} s)")


def fixmatch_of(crest_run: dict[str, Any]) -> dict[str, Any]:
    """FixMatch's result read from a CReST run: its generation 0."""
    return {
        **crest_run,
        "method": "FixMatch",
        "seconds": None,
        "derived_from": "CReST generation 0",
        "balanced_accuracy": crest_run["balanced_accuracy"][:1],
        "tail_recall": crest_run["tail_recall"][:1],
        "pick_accuracy": [],
    }


def science_key(job: tuple[str, int, list[str], str, str]) -> Any:
    """What names a run in the cache: the job without its device (index 3), and the digest of the config file."""
    return [*job[:3], *job[4:], _common.file_digest(CONFIG)]


if __name__ == "__main__":
    main()
