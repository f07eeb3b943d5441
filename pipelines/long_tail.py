"""Long-tailed splits: how many images each class keeps (N_c = N_1 * gamma^(-(c)/(L-1))), how many of them are
labeled (beta), and the split of a dataset's labels into labeled, unlabeled and held-out ids.

Pure arithmetic on label arrays, apart from the datasets that supply them (pipelines/data.py): the
split stage and the benchmarks draw splits with it, and it says what head_count fits a dataset, and
which dataset's split holds no labelled image (``check_splits_hold_images``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def long_tailed_counts(head_count: int, imbalance_ratio: float, num_classes: int) -> list[int]:
    """Per-rank class sizes of an exponentially decaying long tail.

    N_k = int(N_1 * gamma^(-(k-1)/(L-1))), k = 1..L, gamma = N_1 / N_L (CReST, Wei et al. 2021).
    CIFAR10-LT with N_1=5000, gamma=100 gives [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50].
    """
    if head_count < 1 or imbalance_ratio < 1 or num_classes < 1:
        raise ValueError(
            f"long_tailed_counts: expected head_count >= 1, imbalance_ratio >= 1, num_classes >= 1; "
            f"got {head_count}, {imbalance_ratio}, {num_classes}"
        )
    if num_classes == 1:
        return [int(head_count)]
    # round(.., 9) guards int() against 49.99999999 from pow(); it never moves a true integer boundary.
    # N_1 is head_count itself: a product with 1.0 would turn a huge head_count into a float.
    tail = [int(round(head_count * imbalance_ratio ** (-k / (num_classes - 1)), 9)) for k in range(1, num_classes)]
    return [int(head_count), *tail]


def labeled_counts(counts: Sequence[int], labeled_fraction: float) -> list[int]:
    """n_lab_k = ceil(beta * N_k): every class of at least one image keeps at least one label when beta > 0 (CReST code).

    A 1e-9 slack keeps float noise (0.3 * 10 = 3.0000000000000004) from adding a spurious label; the floor of one
    label keeps that slack from taking the only label of a class when beta * N_k is itself below 1e-9.
    """
    if not 0.0 <= labeled_fraction <= 1.0:
        raise ValueError(f"labeled_fraction: expected a value in [0, 1]; got {labeled_fraction}")
    least = 1 if labeled_fraction > 0 else 0
    return [min(int(n), max(least, math.ceil(labeled_fraction * n - 1e-9))) for n in counts]


def rarest_count(head_count: int, imbalance_ratio: float) -> int:
    """N_L, the rarest class's count as ``long_tailed_counts`` rounds it: head_count / imbalance_ratio whatever L (>= 2)."""
    return long_tailed_counts(head_count, imbalance_ratio, 2)[-1]


def smallest_head_count(imbalance_ratio: float) -> int:
    """The smallest head_count that keeps every class at least one image at ``imbalance_ratio`` (about its ceiling)."""
    head = max(1, math.ceil(imbalance_ratio) - 1)
    while rarest_count(head, imbalance_ratio) < 1:
        head += 1
    return head


def empty_class_problem(head_count: int, imbalance_ratio: float, rarest: str = "the rarest class") -> str | None:
    """Why a long tail leaves ``rarest`` (a class as the message names it) 0 images, with the fix; None when it does not.

    Why: imbalance_ratio 200 at head_count 130 drew counts ending in 0 and ran: the class had no label, though
    every class keeps one; CReST's rate for the head, (N_L / N_1)^(1/alpha), was 0, dropping every head
    pseudo-label; and the balanced test set still held the class. N_L = head_count / imbalance_ratio, so the
    largest imbalance_ratio that keeps every class is head_count itself, whatever the number of classes.
    """
    if rarest_count(head_count, imbalance_ratio) >= 1:
        return None
    return (
        f"data.imbalance_ratio: {imbalance_ratio:g} with data.head_count {head_count} leaves {rarest} 0 images "
        f"(N_L = head_count / imbalance_ratio = {head_count / imbalance_ratio:.3g}, below 1): every class needs at "
        f"least 1 image and 1 label. Set data.imbalance_ratio to at most {head_count} (the largest that keeps every "
        f"class at head_count {head_count}), or data.head_count to at least {smallest_head_count(imbalance_ratio)}."
    )


def long_tailed_split(
    labels: np.ndarray,
    num_classes: int,
    head_count: int,
    imbalance_ratio: float,
    labeled_fraction: float,
    rng: np.random.Generator,
    holdout_per_class: int = 0,
    class_order: Sequence[int] | None = None,
    class_names: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Index arrays "labeled", "unlabeled", "holdout" (int64, sorted, disjoint) into ``labels``.

    The balanced holdout (``holdout_per_class`` per class) is drawn FIRST so the test set stays
    balanced whatever the tail looks like; then class ``class_order[k]`` gets the k-th long-tailed
    count, of which ceil(beta * N_k) are labeled and the rest unlabeled. ``class_order`` exists
    because the head class must not be assumed to be class 0 (a bug of the official codes).
    ``class_names`` (by class number, when the dataset names its classes) name the classes its errors cite.
    """
    labels = np.asarray(labels)
    order = _check_class_order(class_order, num_classes)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)}
    sizes = [len(pools[cls]) for cls in order]  # per rank
    counts = long_tailed_counts(head_count, imbalance_ratio, num_classes)
    _check_no_empty_class(counts, [_class_label(cls, class_names) for cls in order], imbalance_ratio)
    _check_head_fits(sizes, head_count, imbalance_ratio, holdout_per_class)
    n_labeled = labeled_counts(counts, labeled_fraction)
    _check_enough_samples(
        sizes, [_class_label(cls, class_names) for cls in order], counts, holdout_per_class, imbalance_ratio
    )
    parts: dict[str, list[np.ndarray]] = {"labeled": [], "unlabeled": [], "holdout": []}
    for rank, cls in enumerate(order):
        pool = pools[cls]
        train = pool[holdout_per_class : holdout_per_class + counts[rank]]
        parts["holdout"].append(pool[:holdout_per_class])
        parts["labeled"].append(train[: n_labeled[rank]])
        parts["unlabeled"].append(train[n_labeled[rank] :])
    return {key: np.sort(np.concatenate(chunks)).astype(np.int64) for key, chunks in parts.items()}


def check_splits_hold_images(train: np.ndarray, test: np.ndarray | None, data: Mapping[str, Any]) -> None:
    """Refuse a dataset whose train split, or own test split, holds no labelled image of the task, naming which.

    Labels are the task's (``split.select_classes``): 0..L-1 in the task, -1 unknown, below -1 a class
    the task leaves out. Why: an empty test split passed every check, and the run trained a generation
    before its evaluation met 0 images; an empty train split was reported as a holdout of 0 that leaves
    nothing to train on, a knob that does nothing for a dataset with its own test split.
    """
    for split, labels in (("train", train), ("test", test)):
        if labels is not None and not np.any(np.asarray(labels) >= 0):
            raise ValueError(_empty_split(split, np.asarray(labels), data))


def _empty_split(split: str, labels: np.ndarray, data: Mapping[str, Any]) -> str:
    """The problem of a split with no labelled image of the task: what it holds, what that stops, and the fix."""
    key, dataset = _dataset_key(data)
    picked = int(np.sum(labels < -1))
    if not labels.size:
        held = "is empty (0 images)"
    elif picked:
        held = f"holds no image of the classes data.classes picks ({picked} of other classes)"
    else:
        held = f"holds {labels.size} image(s), none with a label"
    stops = (
        "nothing to train on"
        if split == "train"
        else "nothing to evaluate on (a dataset with its own test split is tested on it, with no holdout from train)"
    )
    return f"{key}: the {split} split of dataset {dataset} {held}: {stops}. {_empty_split_fix(split, data, picked)}"


def _dataset_key(data: Mapping[str, Any]) -> tuple[str, str]:
    """The setting that names the dataset (data.uri, data.root or data.name) and the dataset as a message cites it."""
    name, uri, root = data.get("name"), data.get("uri"), data.get("root")
    if uri and name == "parquet":
        return "data.uri", repr(str(uri))
    if root:
        return "data.root", f"{name!r} at {root}"
    return "data.name", repr(name)


def _empty_split_fix(split: str, data: Mapping[str, Any], picked: int) -> str:
    """How to give a split images: the classes data.classes picks, the dataset's source, or its folder."""
    if picked:
        return f"Pick classes its {split} split has images of in data.classes, or add images of these classes to it."
    if data.get("name") == "parquet":
        fix = (
            f"Add {split} images to its source and import that into a new destination "
            "(relay data import SOURCE NEW_DEST; data.uri=NEW_DEST)"
        )
        if split == "test":
            fix += (
                ", or import a source with no test split: then holdout_per_class images per class of train are tested"
            )
        return fix + "."
    if data.get("name") == "imagefolder" and data.get("root"):
        return f"Put labelled images in {data['root']}/{split}/<class>/<image>."
    return "Give the dataset labelled images in that split, or use another dataset."


def _check_class_order(class_order: Sequence[int] | None, num_classes: int) -> list[int]:
    """class_order must be a permutation of 0..L-1; default is the identity."""
    if class_order is None:
        return list(range(num_classes))
    order = [int(c) for c in class_order]
    if sorted(order) != list(range(num_classes)):
        raise ValueError(
            f"data.class_order: expected each class number 0..{num_classes - 1} once; got {order}; "
            "list every class of the task once"
        )
    return order


def _class_label(cls: int, names: Sequence[str]) -> str:
    """A class as an error cites it: its name (an image folder's class folder, CIFAR's meta) where it has one."""
    return repr(names[cls]) if 0 <= cls < len(names) else str(cls)


def _check_no_empty_class(counts: Sequence[int], order: Sequence[str], imbalance_ratio: float) -> None:
    """Refuse a long tail that leaves any class 0 images, naming those classes (``order``: the classes by rank)."""
    empty = [cls for cls, count in zip(order, counts, strict=True) if count < 1]
    if not empty:
        return
    named = f"class {empty[0]}" if len(empty) == 1 else f"classes {', '.join(empty)}"
    raise ValueError(empty_class_problem(counts[0], imbalance_ratio, named))


def _check_head_fits(sizes: Sequence[int], head_count: int, imbalance_ratio: float, holdout: int) -> None:
    """A holdout or head class larger than any class can be is one clear problem, whatever the other ranks need
    (a per-class list for a head_count of 10**23 would name every class)."""
    largest = max(sizes, default=0)
    if largest == 0:  # check_splits_hold_images says why and names the dataset; this says it where that is not called
        raise ValueError("the train split holds no labelled image of the task: there is nothing to train on")
    if holdout >= largest:
        raise ValueError(
            f"holdout_per_class {holdout} leaves nothing to train on: the largest class has "
            f"{largest} samples. Lower holdout_per_class."
        )
    if head_count + holdout > largest:
        after = f", {largest - holdout} after the {holdout} held out for testing" if holdout else ""
        raise ValueError(
            f"head_count {head_count} does not fit: the largest class has {largest} samples{after}. "
            f"{_head_count_fix(sizes, imbalance_ratio, holdout)}"
        )


def largest_head_count(sizes: Sequence[int], imbalance_ratio: float, holdout: int) -> int:
    """The largest head_count whose long tail fits every rank's class (``sizes`` per rank) after ``holdout``; 0: none.

    Why: the error for a head_count too large suggests this value, and a suggestion must pass.
    Every rank's count grows with head_count, so a binary search finds it.
    """

    def fits(head: int) -> bool:
        counts = long_tailed_counts(head, imbalance_ratio, len(sizes))
        return all(count + holdout <= size for count, size in zip(counts, sizes, strict=True))

    low, high = 0, max(sizes, default=0) - holdout  # fits(low) holds (or low is 0); the answer is <= high
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _check_enough_samples(
    sizes: Sequence[int], order: list[str], counts: list[int], holdout: int, imbalance_ratio: float
) -> None:
    """Collect every class that is too small and raise once, naming the knobs and the head_count that would fit.

    ``order``: the classes by rank, as the message names them. A holdout of 0 (the dataset has its
    own test split, or none is asked for) is left out of the message and of the fix: no knob there.
    """
    problems = [
        f"class {cls} has {sizes[rank]} samples; needs "
        + (f"{holdout} holdout + {counts[rank]} train" if holdout else f"{counts[rank]} to train on")
        for rank, cls in enumerate(order)
        if sizes[rank] < holdout + counts[rank]
    ]
    if not problems:
        return
    fix = _head_count_fix(sizes, imbalance_ratio, holdout)
    raise ValueError(f"head_count {counts[0]} does not fit: " + "; ".join(problems) + ". " + fix)


def _head_count_fix(sizes: Sequence[int], imbalance_ratio: float, holdout: int) -> str:
    """What to set instead of a head_count that does not fit: the largest that fits every class (computed, so it passes)."""
    best = largest_head_count(sizes, imbalance_ratio, holdout)
    lower = "lower holdout_per_class, " if holdout else ""
    if best < 1:
        return (
            f"No head_count fits every class: {lower}raise imbalance_ratio, "
            "or leave the smallest classes out (data.classes)."
        )
    at = f" and holdout_per_class {holdout}" if holdout else ""
    if rarest_count(best, imbalance_ratio) < 1:
        return (
            f"No head_count fits every class at imbalance_ratio {imbalance_ratio:g}{at}: the largest that fits the "
            f"data, {best}, leaves the rarest class 0 images (head_count / imbalance_ratio below 1): lower "
            f"imbalance_ratio to at most {best} with head_count {best}, {lower}or leave the smallest classes out "
            "(data.classes)."
        )
    return (
        f"Set head_count to at most {best} (the largest that fits every class at imbalance_ratio {imbalance_ratio:g}"
        f"{at}), {lower}or raise imbalance_ratio."
    )
