"""Knowledge Evolution on a small digits subset: KE-N5 vs N1 vs the compute-matched baseline, 3 seeds.

docs/ALGORITHMS.md, Knowledge Evolution: KE's gains are reported against N1 (one generation), but KE-N5 spends five
times N1's compute; the honest comparison is N1 trained five times longer. This script runs all
three with the pipelines' own functions (no Ray, no MLflow) on 30 labeled digits per class (KE
targets small data), small CNN, KELS sr 0.5, and prints mean +- std of test accuracy over seeds
for the dense network and for the slim fit-hypothesis network. JSON: benchmarks/results/ke_digits.json.

    python benchmarks/ke_digits.py [--steps 150] [--generations 5] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.augment import weak_augment
from pipelines.data import load_dataset
from pipelines.evaluation import class_metrics
from pipelines.knowledge_evolution import extract_slim_network, make_split_masks, reinitialize_reset_hypothesis
from pipelines.long_tail import long_tailed_split
from pipelines.models import create_model, parameter_count
from pipelines.pseudo_label import predict_probs
from pipelines.training.student import StudentSettings, train_student

RESULTS = Path(__file__).resolve().parent / "results" / "ke_digits.json"
PER_CLASS, TEST_PER_CLASS = 30, 40


def split(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """30 train and 40 test digits per class, drawn per seed (the fold)."""
    data = load_dataset("digits", None).train
    parts = long_tailed_split(
        data.labels.numpy(),
        data.num_classes,
        PER_CLASS,
        1.0,
        1.0,
        np.random.default_rng(seed),
        holdout_per_class=TEST_PER_CLASS,
    )
    train, test = torch.from_numpy(parts["labeled"]), torch.from_numpy(parts["holdout"])
    return data.images[train], data.labels[train], data.images[test], data.labels[test]


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    probs = predict_probs(model, images, 512, "cpu")
    return float(class_metrics(probs.argmax(axis=1), labels.numpy(), 10)["accuracy"])


def settings(steps: int) -> StudentSettings:
    """The KE recipe scaled to the toy: SGD, warm-up cosine restarted every generation, label smoothing 0.1."""
    return StudentSettings(
        steps=steps, batch_size=32, lr=0.1, weight_decay=1e-4, warmup_steps=max(1, steps // 20), label_smoothing=0.1
    )


def train(model: torch.nn.Module, data: tuple, steps: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return train_student(
        model, data[0], data[1], 10, settings(steps), weak_augment, "cpu", torch.Generator().manual_seed(seed)
    )


def one_seed(seed: int, steps: int, generations: int) -> dict:
    """Dense and slim accuracy after every KE generation, and the compute-matched baseline."""
    data = split(seed)
    torch.manual_seed(seed)
    model = create_model("small_cnn", 10, 1)
    masks = make_split_masks(model, 0.5, "kels", torch.Generator().manual_seed(seed))
    dense, slim = [], []
    for g in range(generations):
        if g > 0:
            reinitialize_reset_hypothesis(model, masks, torch.Generator().manual_seed(1000 * seed + g))
        model = train(model, data, steps, 100 * seed + g)
        dense.append(accuracy(model, data[2], data[3]))
        slim.append(accuracy(extract_slim_network(model, masks), data[2], data[3]))
    torch.manual_seed(seed)
    baseline = train(create_model("small_cnn", 10, 1), data, steps * generations, 100 * seed + 99)
    return {
        "seed": seed,
        "dense": dense,
        "slim": slim,
        "baseline": accuracy(baseline, data[2], data[3]),
        "dense_params": parameter_count(model),
        "slim_params": parameter_count(extract_slim_network(model, masks)),
    }


def summary(values: list[float]) -> dict:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per generation")
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.time()
    runs = []
    for seed in args.seeds:
        runs.append(one_seed(seed, args.steps, args.generations))
        print(f"seed {seed} done at {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    n = args.generations
    rows = {
        "N1 (one generation)": summary([r["dense"][0] for r in runs]) | {"steps": args.steps},
        f"KE-N{n} dense": summary([r["dense"][-1] for r in runs]) | {"steps": n * args.steps},
        f"N1 x{n} steps (compute-matched)": summary([r["baseline"] for r in runs]) | {"steps": n * args.steps},
        "N1 slim (fit hypothesis cut out)": summary([r["slim"][0] for r in runs]) | {"steps": args.steps},
        f"KE-N{n} slim (KELS sr 0.5)": summary([r["slim"][-1] for r in runs]) | {"steps": n * args.steps},
    }
    print(
        f"Knowledge Evolution on digits, {PER_CLASS} train / {TEST_PER_CLASS} test per class, small_cnn, "
        f"{args.steps} steps per generation, seeds {args.seeds}"
    )
    print(f"{'method':<34} {'test accuracy':>18}   steps")
    for name, row in rows.items():
        print(f"{name:<34} {row['mean'] * 100:>8.2f} +- {row['std'] * 100:5.2f}   {row['steps']}")
    per_generation = [statistics.mean(r["dense"][g] for r in runs) for g in range(n)]
    print("dense accuracy per generation (mean):", " ".join(f"{a * 100:.1f}" for a in per_generation))
    print(
        "slim accuracy per generation (mean): ",
        " ".join(f"{statistics.mean(r['slim'][g] for r in runs) * 100:.1f}" for g in range(n)),
    )
    print(
        f"params: dense {runs[0]['dense_params']:,}, slim {runs[0]['slim_params']:,}; wall {time.time() - started:.0f} s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "config": vars(args) | {"per_class": PER_CLASS, "test_per_class": TEST_PER_CLASS, "model": "small_cnn"},
                "summary": rows,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
