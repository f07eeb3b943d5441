"""The methods beside CReST and KE, each against its baseline on digits, 3 seeds: transfer, LwF, FitNets, distillation,
Noisy Student, pretext tasks, source selection, class-balanced losses.

Each experiment is a bundled config (pipelines/configs/*_digits.yaml) run through the pipeline's own stage
functions in-process (``_common.run_in_process``: the seeds of `relay run`, no engine); seed i adds
``seed=i data.fold=i`` (a new split and a new initialisation). Every number is a test-set accuracy of
the stage the method names, with no selection on the test set; mean and sample std over seeds.

- Transfer: fine-tuned from a network pretrained on digits 0-4 vs the same network from random
  weights, on digits 5-9 with 4 labels a class (balanced accuracy).
- LwF: old task (0-4) and new task (5-9) accuracy of LwF, fine-tuning and joint training; the old
  network before the new task for reference.
- FitNets: hint stage + KD vs KD alone vs no teacher (the small CNN, 26 labels a class), and the teacher.
- Distillation (Hinton): the small CNN distilled from a ResNet-18 vs the same student without a teacher,
  the teacher alone, and the student alone for the teacher's steps plus its own (compute-matched by steps).
- Noisy Student: the teacher and its two students (balanced accuracy and tail recall on long-tailed
  digits), and the teacher alone for all three models' steps (compute-matched by steps).
- Pretext: linear-probe accuracy of RotNet and SimCLR encoders (and of a random one), and the last
  generation of CReST+ at 5% labels started from each vs from scratch (FixMatch = generation 0).
- Source selection: the similarity of each candidate, the target accuracy after pretraining on the
  most similar source vs from scratch, and after pretraining on each other source.
- Class-balanced loss: softmax CE, class-balanced CE, sigmoid and focal on digits at gamma 20
  (balanced accuracy and tail recall).

Usage: python benchmarks/methods.py [--seeds 3] [--jobs 2] [--only transfer lwf ...] [--cache FILE] [key=value ...]
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

from orchestrator.yaml_input import layered

Metrics = Mapping[str, Mapping[str, float]]
CONFIGS = "pipelines/configs"
OTHER_SOURCES = {
    "rotated-digits": "{name: rotated-digits, dataset: digits, transform: rotate, strength: 90}",
    "templates": "{name: templates, dataset: synthetic}",
    "pure-noise": "{name: pure-noise, dataset: digits, transform: pure_noise}",
}


def _pct(value: float) -> float:
    return 100.0 * value


def three_models(method: str, baseline: str, first: str) -> Callable[[Metrics], dict[str, float]]:
    """Balanced accuracy of the method's model (g01), the baseline stage's and the first generation's (g00)."""
    return lambda m: {
        method: _pct(m["g01/evaluate"]["balanced_accuracy"]),
        baseline: _pct(m["baseline/evaluate"]["baseline_balanced_accuracy"]),
        first: _pct(m["g00/evaluate"]["balanced_accuracy"]),
    }


transfer = three_models("fine-tuned from digits 0-4", "from scratch", "source network on digits 0-4")
distill = three_models("distilled student (small CNN)", "no teacher", "teacher (ResNet-18) alone")


def lwf(m: Metrics) -> dict[str, float]:
    new = m["g01/evaluate"]
    values = {"old network, old task (before)": _pct(m["g00/evaluate"]["accuracy"])}
    for label, prefix in (("LwF", ""), ("fine-tuning", "finetune_"), ("joint training", "joint_")):
        evaluation = new if not prefix else m[f"{prefix.rstrip('_')}/evaluate"]
        values[f"{label}, old task"] = _pct(evaluation[f"{prefix}old_accuracy"])
        values[f"{label}, new task"] = _pct(evaluation[f"{prefix}new_accuracy"])
    return values


def fitnets(m: Metrics) -> dict[str, float]:
    return {
        "FitNets (hints, then KD)": _pct(m["g01/evaluate"]["balanced_accuracy"]),
        "KD alone": _pct(m["kd/evaluate"]["kd_balanced_accuracy"]),
        "no teacher": _pct(m["baseline/evaluate"]["baseline_balanced_accuracy"]),
        "teacher (ResNet-18)": _pct(m["g00/evaluate"]["balanced_accuracy"]),
    }


def pretext(name: str) -> Callable[[Metrics], dict[str, float]]:
    def values(m: Metrics) -> dict[str, float]:
        found = {
            f"{name}: FixMatch (generation 0)": _pct(m["g00/evaluate"]["balanced_accuracy"]),
            f"{name}: CReST+ (generation 1)": _pct(m["g01/evaluate"]["balanced_accuracy"]),
            f"{name}: CReST+ tail recall": _pct(m["g01/evaluate"]["tail_recall"]),
        }
        if "pretext/probe" in m:
            found[f"{name}: linear probe"] = _pct(m["pretext/probe"]["accuracy"])
        if "g00/probe" in m:  # the from-scratch run probes FixMatch's own network as a reference
            found[f"{name}: linear probe of FixMatch's network"] = _pct(m["g00/probe"]["accuracy"])
        return found

    return values


def domain(m: Metrics) -> dict[str, float]:
    found = {f"similarity of {name}": value for name, value in m["g00/similarity"].items()}
    found["fine-tuned after the most similar source"] = _pct(m["g01/evaluate"]["balanced_accuracy"])
    found["from scratch"] = _pct(m["baseline/evaluate"]["baseline_balanced_accuracy"])
    return found


def one_source(name: str) -> Callable[[Metrics], dict[str, float]]:
    return lambda m: {f"fine-tuned after {name}": _pct(m["g01/evaluate"]["balanced_accuracy"])}


def distill_compute_matched(m: Metrics) -> dict[str, float]:
    return {"no teacher, teacher's + student's steps": _pct(m["baseline/evaluate"]["baseline_balanced_accuracy"])}


def balanced_and_tail(name: str, generation: int = 0) -> Callable[[Metrics], dict[str, float]]:
    """Balanced accuracy and tail recall of one generation's model, named ``NAME: ...``."""
    return lambda m: {
        f"{name}: balanced accuracy": _pct(m[f"g{generation:02d}/evaluate"]["balanced_accuracy"]),
        f"{name}: tail recall": _pct(m[f"g{generation:02d}/evaluate"]["tail_recall"]),
    }


def noisy_student(m: Metrics) -> dict[str, float]:
    models = ("teacher alone", "student 1", "student 2")
    return {key: value for k, name in enumerate(models) for key, value in balanced_and_tail(name, k)(m).items()}


noisy_compute_matched = balanced_and_tail("teacher alone, every generation's steps")


# experiment -> (method, config, overrides, values)
EXPERIMENTS: dict[str, tuple[str, str, list[str], Callable[[Metrics], dict[str, float]]]] = {
    "transfer": ("Transfer learning", "transfer_digits.yaml", [], transfer),
    "lwf": ("Learning without Forgetting", "lwf_digits.yaml", [], lwf),
    "fitnets": ("FitNets", "fitnets_digits.yaml", [], fitnets),
    "distill": ("Distillation", "distill_digits.yaml", [], distill),
    # The student alone for the teacher's steps plus its own, 2 x the config's 200 (a small-CNN teacher keeps the
    # unused part cheap).
    "distill-compute": (
        "Distillation",
        "distill_digits.yaml",
        ["model.name=small_cnn", "train.steps=400"],
        distill_compute_matched,
    ),
    "noisy": ("Noisy Student", "noisy_student_digits.yaml", [], noisy_student),
    # The teacher alone for the steps of the teacher and both students, 3 x the config's 900 (its one student
    # is not reported).
    "noisy-compute": (
        "Noisy Student",
        "noisy_student_digits.yaml",
        ["train.steps=2700", "train.warmup_steps=135", "noisy.iterations=1"],
        noisy_compute_matched,
    ),
    "pretext-none": (
        "Self-supervised pretraining",
        "pretext_crest_digits.yaml",
        ["pretext.method=none", "probe=[g00/train]"],
        pretext("from scratch"),
    ),
    "pretext-rotnet": (
        "Self-supervised pretraining",
        "pretext_crest_digits.yaml",
        ["pretext.method=rotnet"],
        pretext("RotNet"),
    ),
    "pretext-simclr": (
        "Self-supervised pretraining",
        "pretext_crest_digits.yaml",
        ["pretext.method=simclr"],
        pretext("SimCLR"),
    ),
    "domain": ("Source selection (domain similarity)", "domain_similarity_digits.yaml", [], domain),
    **{
        f"domain-{name}": (
            "Source selection (domain similarity)",
            "domain_similarity_digits.yaml",
            [f"domain.sources=[{source}]", "domain.baseline=false"],
            one_source(name),
        )
        for name, source in OTHER_SOURCES.items()
    },
    "cb-ce": (
        "Class-balanced loss",
        "class_balanced_digits.yaml",
        ["train.loss=ce", "train.class_balanced_beta=0"],
        balanced_and_tail("softmax CE"),
    ),
    "cb-ce-balanced": (
        "Class-balanced loss",
        "class_balanced_digits.yaml",
        ["train.loss=ce"],
        balanced_and_tail("CB softmax CE"),
    ),
    "cb-sigmoid": (
        "Class-balanced loss",
        "class_balanced_digits.yaml",
        ["train.loss=sigmoid"],
        balanced_and_tail("CB sigmoid"),
    ),
    "cb-focal": (
        "Class-balanced loss",
        "class_balanced_digits.yaml",
        ["train.loss=focal"],
        balanced_and_tail("CB focal"),
    ),
}


def run_one(job: tuple[str, int, str, list[str]]) -> dict[str, Any]:
    """One (experiment, seed) pipeline in a fresh process; the experiment's named values."""
    experiment, seed, device, extra = job
    _, config_file, overrides, values = EXPERIMENTS[experiment]
    every = layered(overrides, extra, [f"seed={seed}", f"data.fold={seed}"])
    spec, config = _common.load_config(f"{CONFIGS}/{config_file}", every)
    elapsed, metrics = _common.timed(lambda: _common.run_in_process(spec.build(config), config.seed, device))
    return {"experiment": experiment, "seed": seed, "seconds": elapsed, "values": values(metrics)}


def methods_key(job: tuple[str, int, str, list[str]]) -> list[Any]:
    """What names a run in the cache: the job and the digest of its experiment's config file."""
    return [*job, _common.file_digest(f"{CONFIGS}/{EXPERIMENTS[job[0]][1]}")]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, value): mean and sample std over seeds, in the order of EXPERIMENTS."""
    rows = []
    for experiment, (method, *_) in EXPERIMENTS.items():
        mine = [r for r in runs if r["experiment"] == experiment]
        for label in mine[0]["values"] if mine else []:
            values = [r["values"][label] for r in mine]
            rows.append(
                {
                    "method": method,
                    "result": label,
                    "mean": statistics.mean(values),
                    "std": _common.spread(values),
                    "seeds": len(values),
                    "values": [round(v, 4) for v in values],
                }
            )
    return rows


def random_probe(seeds: int) -> dict[str, Any]:
    """The linear probe of a randomly initialised small CNN on the pretext config's split: the floor to beat."""
    import torch

    from orchestrator.dag import StageContext
    from pipelines.models import create_model
    from pipelines.self_supervised import linear_probe
    from pipelines.stages.common import subset_tensors
    from pipelines.stages.split import split_data
    from pipelines.transfer import embed

    values = []
    for seed in range(seeds):
        _, config = _common.load_config(f"{CONFIGS}/pretext_crest_digits.yaml", [f"seed={seed}", f"data.fold={seed}"])
        ctx = StageContext(run_id="bench", stage="data/split", generation=None, seed=seed, device="cpu", attempt=1)
        split = split_data(ctx, {}, {"data": config.data, "io": {"split": "s"}}).outputs["s"]
        torch.manual_seed(seed)
        network = create_model("small_cnn", 10, 1)
        (_, x, y), (_, tx, ty) = (subset_tensors(config.data, split, s) for s in ("labeled", "test"))
        result = linear_probe(embed(network, x, 512, "cpu"), y.numpy(), embed(network, tx, 512, "cpu"), ty.numpy(), 10)
        values.append(_pct(result["accuracy"]))
    return {
        "method": "Self-supervised pretraining",
        "result": "random network: linear probe",
        "mean": statistics.mean(values),
        "std": _common.spread(values),
        "seeds": seeds,
        "values": values,
    }


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="pipelines run side by side (one torch thread each)")
    p.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), help="run these experiments only")
    p.add_argument("--name", default="methods", help="results/<name>.json")
    p.add_argument("--cache", default="", help="JSON lines of finished runs, reused when the same run is asked again")
    p.add_argument("--cached-only", action="store_true", help="summarise the runs in --cache, run nothing")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides for every experiment, e.g. train.steps=5 (a smoke run)"
    )
    args = p.parse_args()
    device = _common.device_or_exit(args.device)
    chosen = args.only or list(EXPERIMENTS)
    jobs = [(experiment, seed, device, args.overrides) for seed in range(args.seeds) for experiment in chosen]
    cache = Path(args.cache) if args.cache else None
    elapsed, runs = _common.timed(
        lambda: _common.run_cached(run_one, jobs, args.jobs, cache, args.cached_only, key_of=methods_key)
    )
    rows = summarize(runs)
    if "pretext-none" in chosen:
        rows.insert(
            next(i for i, r in enumerate(rows) if r["method"] == "Self-supervised pretraining"),
            random_probe(args.seeds),
        )
    for row in rows:
        row["mean ± std"] = (
            f"{row['mean']:.3f} ± {row['std']:.3f}"
            if row["result"].startswith("similarity")
            else f"{row['mean']:.1f} ± {row['std']:.1f}"
        )
    _common.report(
        args.name,
        f"Each method vs its baseline on digits (test accuracy %, mean ± std over {args.seeds} seeds)",
        rows,
        {
            "runs": runs,
            "wall_s": elapsed,
            "overrides": args.overrides,
            "protocol": "seed i = seed i + data.fold i; bundled *_digits.yaml configs",
        },
        columns=["method", "result", "mean ± std", "values"],
    )
    print(f"\n(total {elapsed:.0f} s)")


if __name__ == "__main__":
    main()
