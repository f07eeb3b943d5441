"""An independent, single-file CReST / CReST+ on digits-LT: the yardstick Relay is measured against.

Plain torch + numpy + torchvision + scikit-learn's bundled digits; it imports nothing from
``pipelines/`` or ``orchestrator/`` on purpose, so a bug shared with the product cannot hide here.

Protocol (docs/ALGORITHMS.md: Long-tailed splits, FixMatch, CReST and CReST+):
- digits 8x8 at native resolution; per seed: a random class order (rank k -> digit order[k]) and a
  random split; a balanced test set of 44 images per class drawn first; N_k = int(130 * 10^(-k/9));
  ceil(0.1 * N_k) labeled per class, the rest unlabeled.
- FixMatch: batch 32, mu 4, tau 0.95, lambda_u 1, SGD lr 0.03 Nesterov 0.9, cos(7 pi k / 16 K),
  wd 5e-4 (not on BN or bias), EMA 0.999 with warm-up (d_n = min(d, (1+n)/(10+n))), evaluate and
  pseudo-label with the EMA model. Weak = random translation by up to 1 px (zero fill), no flip;
  strong = weak + torchvision RandAugment (N 2, M 5 on the 0..10 scale) + a 2-4 px Cutout.
- Model: conv32-pool-conv64-conv64-GAP-fc (BN + ReLU after each conv), ~56k parameters.
- CReST: every generation trains from scratch; afterwards the EMA model labels the unlabeled split
  (plain softmax); per predicted class c, the top floor(mu_rank(c) * n_c) by confidence join the
  ORIGINAL labeled set (picks replace earlier picks), mu_l = (N_{L+1-l} / N_1)^(1/3) by labeled-count
  rank.
- CReST+: distribution alignment q <- normalize(q * p_target / p_model) before the threshold;
  p_target = normalize(p_labeled^t) with p_labeled the ORIGINAL labeled distribution and t going
  linearly from 1 to 0.5 over the generations; p_model = bias-corrected EMA (m 0.999, zero start,
  divided by 1 - m^k) of the batch mean of q on the weak unlabeled views.
- Reported: balanced accuracy and tail-3 recall (the 3 classes with the smallest N_k) of the LAST
  generation, mean +- sample std over seeds, and the paired CReST+ - FixMatch difference.

Usage: python benchmarks/reference_crest.py [--seeds 5] [--first-seed 0] [--steps 600]
       [--generations 3] [--jobs 1] [--methods FixMatch,CReST,CReST+,FixMatch-3x] [--name reference_crest]
FixMatch is, by construction, CReST's generation 0 (same seed, same data): it is taken from there.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # only its JSON writer: stdlib, nothing of Relay

NUM_CLASSES = 10


# --- data --------------------------------------------------------------------------------------


def load_digits_uint8() -> tuple[torch.Tensor, np.ndarray]:
    """sklearn digits as uint8 [N, 1, 8, 8] (0..16 scaled to 0..255) and int labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(np.asarray(bunch.images, dtype=np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(images).unsqueeze(1), np.asarray(bunch.target, dtype=np.int64)


def make_split(
    labels: np.ndarray,
    seed: int,
    head: int = 130,
    gamma: float = 10.0,
    beta: float = 0.1,
    test_per_class: int = 44,
    recipe: str = "own",
) -> dict:
    """Class order and split drawn from ``seed``; returns index arrays and the class order.

    recipe "own": this script's draw. "relay": the same images as Relay's science benchmark for
    seed i (class order = default_rng(1000 + i).permutation(10), then per class id a permutation
    from default_rng(i), test images first), written out here so that the two implementations can
    be compared on identical splits, seed by seed, without this file importing Relay.
    """
    if recipe == "relay":
        order = np.random.default_rng(1_000 + seed).permutation(NUM_CLASSES)
        rng = np.random.default_rng(seed)
        pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)}
    elif recipe == "own":
        rng = np.random.default_rng(10_000 + seed)
        order = rng.permutation(NUM_CLASSES)
        pools = None
    else:
        raise ValueError(f"split recipe: expected own or relay, got {recipe!r}")
    counts = [int(head * gamma ** (-k / (NUM_CLASSES - 1)) + 1e-9) for k in range(NUM_CLASSES)]
    labeled, unlabeled, test = [], [], []
    for rank, cls in enumerate(order):
        pool = pools[cls] if pools is not None else rng.permutation(np.flatnonzero(labels == cls))
        assert len(pool) >= test_per_class + counts[rank], (cls, len(pool))
        n_lab = math.ceil(beta * counts[rank] - 1e-9)
        test.append(pool[:test_per_class])
        train = pool[test_per_class : test_per_class + counts[rank]]
        labeled.append(train[:n_lab])
        unlabeled.append(train[n_lab:])
    cat = lambda parts: np.sort(np.concatenate(parts)).astype(np.int64)  # noqa: E731
    return {
        "order": order.tolist(),
        "counts": counts,
        "labeled": cat(labeled),
        "unlabeled": cat(unlabeled),
        "test": cat(test),
        "tail": [int(c) for c in order[-3:]],
    }


# --- augmentation (uint8 in, uint8 out) ----------------------------------------------------------


def weak(images: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``shift`` px per image and axis, zero (background) fill; no flip."""
    b, _, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (b,))
    dx = torch.randint(0, 2 * shift + 1, (b,))
    rows = dy[:, None] + torch.arange(h)[None, :]  # [b, h]
    cols = dx[:, None] + torch.arange(w)[None, :]  # [b, w]
    bi = torch.arange(b)[:, None, None]
    return padded[bi, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class Strong:
    """weak + torchvision RandAugment(N, M on 0..10) + Cutout of a random 2-4 px square (zero fill), per image.

    torchvision's RandAugment draws one op for everything it is called on, so calling it on a batch
    would give the whole batch the same ops. Per image it is exact but slow; here each image draws
    its own op and sign per slot, and the images that drew the same (op, sign) go through
    torchvision's own op together (its functional ops take batches): the same distribution as a
    per-image call, at a fraction of the cost.
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 5, cutout: tuple[int, int] = (2, 4)) -> None:
        self.randaug = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=11)
        self.ops = list(self.randaug._AUGMENTATION_SPACE.items())
        self.num_ops, self.magnitude, self.cutout = num_ops, magnitude, cutout

    def randaugment(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        b, _, h, w = images.shape
        for _ in range(self.num_ops):
            op = torch.randint(len(self.ops), (b,))
            negative = torch.rand(b) <= 0.5
            for k, (name, (magnitudes_fn, signed)) in enumerate(self.ops):
                magnitudes = magnitudes_fn(11, h, w)
                base = 0.0 if magnitudes is None else float(magnitudes[self.magnitude])
                for sign in (False, True) if signed and magnitudes is not None else (False,):
                    rows = torch.nonzero((op == k) & ((negative == sign) if signed else True)).flatten()
                    if rows.numel():
                        out[rows] = self.randaug._apply_image_or_video_transform(
                            out[rows],
                            name,
                            -base if sign else base,
                            interpolation=self.randaug.interpolation,
                            fill=self.randaug._fill,
                        )
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.randaugment(weak(images))
        b, _, h, w = out.shape
        side = torch.randint(self.cutout[0], self.cutout[1] + 1, (b, 1))
        top = torch.randint(0, h, (b, 1)) - side // 2
        left = torch.randint(0, w, (b, 1)) - side // 2
        r, c = torch.arange(h)[None, :], torch.arange(w)[None, :]
        mask = (((r >= top) & (r < top + side))[:, :, None] & ((c >= left) & (c < left + side))[:, None, :])[:, None]
        return torch.where(mask, torch.zeros_like(out), out)


def to_input(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 * 2.0 - 1.0


# --- model, EMA ----------------------------------------------------------------------------------


class CNN(nn.Module):
    """conv32-pool-conv64-conv64-GAP-fc, BN + ReLU after each conv: 56.6k parameters on 1x8x8."""

    def __init__(self) -> None:
        super().__init__()
        block = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]  # noqa: E731
        self.features = nn.Sequential(
            *block(1, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(64, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        import copy

        self.model = copy.deepcopy(model).eval()
        self.decay, self.n = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1.0 + self.n) / (10.0 + self.n))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
        self.n += 1


# --- one generation of FixMatch (optionally with alignment) ----------------------------------------


def train_fixmatch(
    x_lab: torch.Tensor,
    y_lab: torch.Tensor,
    x_unl: torch.Tensor,
    steps: int,
    seed: int,
    p_target: torch.Tensor | None,
    args: argparse.Namespace,
) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = CNN()
    ema = EMA(model, args.ema)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    strong = Strong(2, args.magnitude)
    b, ub = args.batch, args.batch * args.mu
    pools = [torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)]

    def draw(i: int, n: int, size: int) -> torch.Tensor:
        while pools[i].numel() < size:
            pools[i] = torch.cat([pools[i], torch.randperm(n, generator=gen)])
        out, pools[i] = pools[i][:size], pools[i][size:]
        return out

    m, p_raw = args.da_momentum, torch.zeros(NUM_CLASSES)
    model.train()
    for k in range(steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * math.cos(7.0 * math.pi * k / (16.0 * steps))
        il, iu = draw(0, len(y_lab), b), draw(1, len(x_unl), ub)
        u = x_unl[iu]
        logits = model(to_input(torch.cat([weak(x_lab[il]), weak(u), strong(u)])))
        lx, lw, ls = logits[:b], logits[b : b + ub], logits[b + ub :]
        loss_x = F.cross_entropy(lx, y_lab[il])
        with torch.no_grad():
            q = torch.softmax(lw, dim=1)
            if p_target is not None:
                p_raw = m * p_raw + (1.0 - m) * q.mean(0)
                p_model = p_raw / (1.0 - m ** (k + 1))
                q = q * p_target / p_model.clamp_min(1e-12)
                q = q / q.sum(1, keepdim=True)
            conf, target = q.max(1)
            mask = (conf >= args.threshold).float()
        loss_u = (F.cross_entropy(ls, target, reduction="none") * mask).sum() / ub
        loss = loss_x + args.lambda_u * loss_u
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
    return ema.model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(to_input(images)), dim=1)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, tail: list[int]) -> dict:
    pred = predict(model, images).argmax(1)
    recall = [float((pred[labels == c] == c).float().mean()) for c in range(NUM_CLASSES)]
    return {
        "balanced_accuracy": float(np.mean(recall)),
        "tail_recall": float(np.mean([recall[c] for c in tail])),
        "recall": recall,
    }


def crest_picks(probs: torch.Tensor, labeled_counts: np.ndarray, alpha: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels): per predicted class, the top floor(mu * n_c) by confidence; mu by labeled-count rank."""
    order = np.argsort(-labeled_counts, kind="stable")  # rank -> class
    sorted_counts = labeled_counts[order].astype(np.float64)
    rates = np.empty(NUM_CLASSES)
    rates[order] = (sorted_counts[::-1] / sorted_counts[0]) ** (1.0 / alpha)
    conf, pred = probs.max(1)
    conf, pred = conf.numpy(), pred.numpy()
    rows = []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(pred == c)
        members = members[np.argsort(-conf[members], kind="stable")]
        rows.append(members[: math.floor(rates[c] * len(members) + 1e-9)])
    rows = np.concatenate(rows).astype(np.int64)
    return rows, pred[rows]


def run(job: tuple[str, int, argparse.Namespace]) -> dict:
    """One (method, seed): per-generation metrics."""
    method, seed, args = job
    torch.set_num_threads(1)
    images, labels = load_digits_uint8()
    split = make_split(labels, seed, gamma=args.gamma, beta=args.beta, recipe=args.split)
    x_lab, y_lab = images[split["labeled"]], torch.from_numpy(labels[split["labeled"]])
    x_unl, y_unl = images[split["unlabeled"]], labels[split["unlabeled"]]
    x_test, y_test = images[split["test"]], torch.from_numpy(labels[split["test"]])
    counts = np.bincount(y_lab.numpy(), minlength=NUM_CLASSES)
    p_labeled = torch.from_numpy(counts / counts.sum()).float()
    generations = args.generations if method in ("CReST", "CReST+") else 1
    steps = args.steps * (args.generations if method == "FixMatch-3x" else 1)
    started, gens, picks_acc = time.perf_counter(), [], []
    xl, yl = x_lab, y_lab
    for g in range(generations):
        p_target = None
        if method == "CReST+":
            t = 1.0 if generations == 1 else 1.0 - (g / (generations - 1)) * (1.0 - args.t_min)
            p_target = p_labeled**t
            p_target = p_target / p_target.sum()
        model = train_fixmatch(
            xl,
            yl,
            x_unl,
            steps,
            seed * 1000 + g + (500 if method == "FixMatch-3x" else 0) + (100 if method == "CReST+" else 0),
            p_target,
            args,
        )
        gens.append(evaluate(model, x_test, y_test, split["tail"]))
        if g + 1 < generations:
            rows, pseudo = crest_picks(predict(model, x_unl), counts)
            picks_acc.append(float(np.mean(pseudo == y_unl[rows])) if len(rows) else 0.0)
            xl = torch.cat([x_lab, x_unl[rows]])
            yl = torch.cat([y_lab, torch.from_numpy(pseudo).long()])
    return {
        "method": method,
        "seed": seed,
        "seconds": time.perf_counter() - started,
        "class_order": split["order"],
        "tail_classes": split["tail"],
        "balanced_accuracy": [m["balanced_accuracy"] for m in gens],
        "tail_recall": [m["tail_recall"] for m in gens],
        "recall_last": gens[-1]["recall"],
        "pick_accuracy": picks_acc,
    }


def summarize(runs: list[dict], names: list[str]) -> tuple[list[dict], dict]:
    rows = []
    for name in names:
        mine = sorted((r for r in runs if r["method"] == name), key=lambda r: r["seed"])
        bal = [100 * r["balanced_accuracy"][-1] for r in mine]
        tail = [100 * r["tail_recall"][-1] for r in mine]
        std = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        rows.append(
            {
                "method": name,
                "seeds": len(mine),
                "bal_acc_mean": statistics.mean(bal),
                "bal_acc_std": std(bal),
                "tail_recall_mean": statistics.mean(tail),
                "tail_recall_std": std(tail),
                "per_seed_bal_acc": [round(v, 1) for v in bal],
            }
        )
    paired = {}
    by = {(r["method"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    for other in ("CReST", "CReST+"):
        if all((other, s) in by and ("FixMatch", s) in by for s in seeds):
            d_bal = [
                100 * (by[(other, s)]["balanced_accuracy"][-1] - by[("FixMatch", s)]["balanced_accuracy"][-1])
                for s in seeds
            ]
            d_tail = [100 * (by[(other, s)]["tail_recall"][-1] - by[("FixMatch", s)]["tail_recall"][-1]) for s in seeds]
            paired[f"{other} - FixMatch"] = {
                "bal_acc_mean": statistics.mean(d_bal),
                "bal_acc_std": statistics.stdev(d_bal) if len(d_bal) > 1 else 0.0,
                "tail_recall_mean": statistics.mean(d_tail),
                "positive_seeds": sum(d > 0 for d in d_bal),
                "seeds": len(seeds),
                "per_seed": [round(d, 1) for d in d_bal],
            }
    return rows, paired


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--methods", default="CReST,CReST+,FixMatch-3x")
    p.add_argument("--gamma", type=float, default=10.0)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--mu", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--lambda-u", type=float, default=1.0)
    p.add_argument("--magnitude", type=int, default=5)
    p.add_argument("--t-min", type=float, default=0.5)
    p.add_argument("--da-momentum", type=float, default=0.999)
    p.add_argument(
        "--split",
        choices=("own", "relay"),
        default="own",
        help="own: this script's split draw; relay: the same images as benchmarks/science.py per seed",
    )
    p.add_argument("--name", default="reference_crest")
    args = p.parse_args()
    torch.set_num_threads(1)
    methods = args.methods.split(",")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(m, s, args) for s in seeds for m in methods]
    started = time.perf_counter()
    if args.jobs <= 1:
        runs = [run(j) for j in jobs]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(run, jobs))
    if "CReST" in methods:  # FixMatch = CReST's generation 0 (same seed, same data, no picks yet)
        runs += [
            {
                **r,
                "method": "FixMatch",
                "balanced_accuracy": r["balanced_accuracy"][:1],
                "tail_recall": r["tail_recall"][:1],
                "recall_last": None,
                "pick_accuracy": [],
            }
            for r in runs
            if r["method"] == "CReST"
        ]
    names = [n for n in ("FixMatch", "CReST", "CReST+", "FixMatch-3x") if any(r["method"] == n for r in runs)]
    rows, paired = summarize(runs, names)
    print(
        f"\n## Reference CReST on digits-LT ({args.split} splits, gamma {args.gamma:g}, beta {args.beta:g}, {args.generations} x {args.steps} steps, "
        f"seeds {seeds.start}-{seeds.stop - 1}; last generation, %)\n"
    )
    print("| method | balanced accuracy | tail-3 recall | per seed |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['bal_acc_mean']:.1f} +- {r['bal_acc_std']:.1f} | {r['tail_recall_mean']:.1f} +- "
            f"{r['tail_recall_std']:.1f} | {' '.join(map(str, r['per_seed_bal_acc']))} |"
        )
    for name, d in paired.items():
        print(
            f"| paired {name} | {d['bal_acc_mean']:+.1f} +- {d['bal_acc_std']:.1f} ({d['positive_seeds']} of {d['seeds']} seeds) "
            f"| {d['tail_recall_mean']:+.1f} | {' '.join(map(str, d['per_seed']))} |"
        )
    wall = time.perf_counter() - started
    settings = {**vars(args), "torch_threads": torch.get_num_threads()}
    out = _common.write_result(
        args.name, {"settings": settings, "rows": rows, "paired": paired, "runs": runs, "wall_s": wall}
    )
    print(f"\n(wrote {out}; {wall:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
