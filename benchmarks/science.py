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

- ``--through-relay`` runs each (method, seed) as a `relay run` instead (Ray, the artifact store, MLflow:
  the runs are kept and browsable), ``--jobs`` of them side by side; with ``--address`` every run joins
  that cluster, so on a cluster with a free CPU per run the seeds take the wall time of one. The
  numbers equal the in-process runner's (a test checks it).

Usage: python benchmarks/science.py [--seeds 3] [--jobs 2] [--compute-matched] [--ceiling] [--methods A,B]
       [--through-relay [--address HOST:6379] [--workspace DIR]] [key=value ...]
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

from orchestrator.yaml_input import layered

CONFIG = "pipelines/configs/crest_digits.yaml"
PAPER = {  # CIFAR10-LT gamma 100, beta 10% (docs/ALGORITHMS.md, CReST and CReST+): the direction to compare with
    "FixMatch": 66.3,
    "CReST": 75.9,
    "CReST+": 78.1,
}


CEILING = "Supervised ceiling"


def methods(generations: int, steps: int, compute_matched: bool, ceiling: bool = False) -> dict[str, list[str]]:
    """Overrides per method; every method shares the data, model and per-generation schedule.

    The ceiling is the same model and schedule trained on every training image with its true label
    (labeled fraction 0.99: ceil leaves one image unlabeled in each class over 100 images, which
    keeps the unlabeled split non-empty) and no unlabeled loss: what no semi-supervised method on
    these images should be expected to beat.
    """
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
    if ceiling:
        found[CEILING] = [
            "crest.generations=1",
            "crest.alignment=false",
            "data.labeled_fraction=0.99",
            "train.lambda_u=0",
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
    _, config = _common.load_config(CONFIG, layered(overrides, seed_overrides(seed, order)))
    from pipelines.builders import crest

    elapsed, metrics = _common.timed(lambda: _common.run_in_process(crest.build(config), config.seed, device))
    return result_of(method, seed, elapsed, metrics)


def run_through_relay(job: tuple[str, int, list[str], str, str], address: str | None = None) -> dict[str, Any]:
    """One (method, seed) as a `relay run` of the same config: Ray, the artifact store and MLflow, as a user runs it.

    The numbers are read back from the run's record in the artifact store (its ledger names each
    stage's output, whose manifest holds the stage's metrics), so they are what Relay stored, and
    the run stays browsable in MLflow (``run_id`` in the result). Stages run as Ray tasks and
    actors on ``address`` (a cluster's GCS address; None: a local Ray per run), so runs started
    side by side (``--jobs``) spread over the cluster. The workspace is Relay's own
    ($RELAY_WORKSPACE, $RELAY_ARTIFACT_URI, else ./relay-workspace); the device is the config's.
    """
    method, seed, overrides, _, order = job
    settings = layered(overrides, seed_overrides(seed, order))
    run_id = f"science-{method.lower().replace(' ', '-').replace('+', 'plus')}-s{seed}-{uuid.uuid4().hex[:6]}"
    command = [sys.executable, "-m", "orchestrator.cli", "run", CONFIG, *settings, "--run-id", run_id]
    command += ["--address", address] if address else []
    elapsed, finished = _common.timed(lambda: subprocess.run(command, cwd=_common.ROOT, capture_output=True, text=True))
    if finished.returncode != 0:
        raise RuntimeError(
            f"relay run {run_id} exited {finished.returncode}:\n{finished.stdout[-3000:]}{finished.stderr[-3000:]}"
        )
    return {**result_of(method, seed, elapsed, stored_metrics(settings, run_id)), "run_id": run_id}


def stored_metrics(settings: list[str], run_id: str) -> dict[str, dict[str, float]]:
    """Every stage's metrics of a finished run, by stage name, from the run record and the stage manifests."""
    from orchestrator.config import artifact_uri
    from orchestrator.engine.artifacts import ArtifactStore
    from orchestrator.engine.ledger import read_ledger

    _, config = _common.load_config(CONFIG, settings)
    store = ArtifactStore(artifact_uri(config.run))
    ledger = read_ledger(store, run_id)
    if ledger is None:
        raise RuntimeError(f"relay run {run_id} left no run record in {store.uri}")
    metrics = {}
    for name, entry in ledger["stages"].items():
        manifest = store.read_manifest(entry["fingerprint"])
        if manifest is None:
            raise RuntimeError(f"relay run {run_id}: stage {name} has no output in {store.uri}")
        metrics[name] = dict(manifest.metrics)
    return metrics


def result_of(method: str, seed: int, elapsed: float, metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """A run's row: per-generation balanced accuracy and tail recall, and each rebalance stage's pick accuracy."""
    return {
        "method": method,
        "seed": seed,
        "seconds": elapsed,
        "balanced_accuracy": _common.generation_metrics(metrics, "balanced_accuracy"),
        "tail_recall": _common.generation_metrics(metrics, "tail_recall"),
        "pick_accuracy": [m.get("picks_accuracy") for k, m in sorted(metrics.items()) if k.endswith("/rebalance")],
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
    """CReST+ against FixMatch, paired by seed (the goal: >= +5 balanced, >= +15 tail, every seed)."""
    pair = paired(runs, "CReST+", "FixMatch")
    if pair is None:
        return "CReST+ - FixMatch: not measured"
    ok = pair["bal_acc_mean"] >= 5 and pair["tail_recall_mean"] >= 15 and pair["positive_seeds"] == len(pair["seeds"])
    headroom = paired(runs, CEILING, "FixMatch")
    room = (
        ""
        if headroom is None
        else f" (the supervised ceiling is {headroom['bal_acc_mean']:+.1f} balanced, "
        f"{headroom['tail_recall_mean']:+.1f} tail above FixMatch)"
    )
    return (
        f"CReST+ - FixMatch, paired: {pair['bal_acc_mean']:+.1f} +- {pair['bal_acc_std']:.1f} balanced, "
        f"{pair['tail_recall_mean']:+.1f} +- {pair['tail_recall_std']:.1f} tail, positive in "
        f"{pair['positive_seeds']} of {len(pair['seeds'])} seeds: goal {'MET' if ok else 'MISSED'}{room}"
    )


def all_pairs(runs: list[dict[str, Any]], table: dict[str, list[str]], generations: int) -> list[dict[str, Any]]:
    """Every method against FixMatch, and CReST / CReST+ against the compute-matched FixMatch when it ran."""
    wanted = [(m, "FixMatch") for m in table if m != "FixMatch"]
    matched = f"FixMatch x{generations} steps"
    if matched in table:
        wanted += [("CReST", matched), ("CReST+", matched)]
    if CEILING in table:  # what is left above CReST+ (the headroom over FixMatch is the ceiling's pair above)
        wanted += [(CEILING, "CReST+")]
    return [p for p in (paired(runs, m, b) for m, b in wanted if m in table) if p is not None]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--jobs", type=int, default=2, help="pipelines run side by side (one torch thread each)")
    p.add_argument("--compute-matched", action="store_true", help="add FixMatch with G x steps")
    p.add_argument(
        "--ceiling", action="store_true", help=f"add '{CEILING}': every training image labeled, no unlabeled loss"
    )
    p.add_argument("--methods", default="", help="comma-separated subset of the table's methods (default: all)")
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
    p.add_argument(
        "--through-relay",
        action="store_true",
        help="run each (method, seed) as a `relay run` (Ray, artifact store, MLflow) instead of in-process",
    )
    p.add_argument("--address", default=None, help="with --through-relay: the Ray cluster (HOST:6379) every run joins")
    p.add_argument(
        "--workspace", default=None, help="with --through-relay: RELAY_WORKSPACE for the runs (default: Relay's own)"
    )
    p.add_argument("--cache", default="", help="JSON lines of finished runs, reused when the same run is asked again")
    p.add_argument("--cached-only", action="store_true", help="summarise the runs in --cache, run nothing")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every method, e.g. train.steps=300")
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    _, base = _common.load_config(CONFIG, args.overrides)
    if (args.address or args.workspace) and not args.through_relay:
        p.error("--address and --workspace are for runs through Relay; add --through-relay, or leave them out")
    try:
        table = chosen_methods(
            methods(base.crest.generations, base.train.steps, args.compute_matched, args.ceiling), args.methods
        )
    except ValueError as exc:
        p.error(str(exc))  # exit 2, before anything runs or is written
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
    runner, key_of = run_one, science_key
    if args.through_relay:
        if args.workspace:
            from orchestrator.config import WORKSPACE_ENV

            os.environ[WORKSPACE_ENV] = str(Path(args.workspace).resolve())  # the runs' and the read-back's
        runner = functools.partial(run_through_relay, address=args.address)
        key_of = relay_key
    elapsed, runs = _common.timed(
        lambda: _common.run_cached(runner, jobs, args.jobs, cache, args.cached_only, key_of=key_of)
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


def chosen_methods(table: dict[str, list[str]], wanted: str) -> dict[str, list[str]]:
    """The table cut to ``--methods`` (comma-separated; empty: all), or a ValueError naming what it does not know."""
    if not wanted:
        return table
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; this run's methods are: {', '.join(table)}")
    return {name: table[name] for name in names}


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


def relay_key(job: tuple[str, int, list[str], str, str]) -> Any:
    """A run through Relay is cached apart from the in-process run of the same job: comparing the two is a check."""
    return [*science_key(job), "relay run"]


if __name__ == "__main__":
    main()
