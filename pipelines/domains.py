"""Domain similarity for choosing a transfer source (Cui et al., CVPR 2018), and generated candidate sources.

A domain is the set of its classes' mean features, each weighted by its share of the domain's
images. The distance between a source S and the target T is the Earth Mover's Distance between
those two weighted sets, with the Euclidean distance between class means as ground cost:

    EMD(S, T) = min_f sum_{i,j} f_ij * ||m_i^S - m_j^T||   s.t. f >= 0, sum_j f_ij = w_i^S, sum_i f_ij = w_j^T
    sim(S, T) = exp(-gamma * EMD(S, T))                     (gamma = 0.01 in the paper)

The transport problem is solved by POT (``ot.emd2``, an exact network-simplex solver); the
features come from a feature extractor chosen by the caller. The most similar source is the one to
pretrain on.

``derive_source`` makes candidate sources of known relatedness from labeled images, so the ranking
can be tested: the images themselves, with noise, rotated, or pure noise with random labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import ot
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

TRANSFORMS = ("none", "noise", "rotate", "pure_noise")


def derive_source(
    images: Tensor, labels: Tensor, transform: str, strength: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A labeled source made from uint8 ``images`` and their ``labels``.

    "none": as they are; "noise": plus Gaussian noise of std ``strength`` x 255; "rotate": every
    image rotated by ``strength`` degrees; "pure_noise": uniform random pixels with uniformly
    random labels over the same classes (a source that shares nothing with any target).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"derive_source: unknown transform {transform!r}; valid: {', '.join(TRANSFORMS)}")
    if transform == "none":
        return images, labels
    if transform == "noise":
        noise = torch.randn(images.shape, generator=generator) * (strength * 255.0)
        return (images.float() + noise).round().clamp(0, 255).to(torch.uint8), labels
    if transform == "rotate":
        return TF.rotate(images, strength), labels
    pixels = torch.randint(0, 256, images.shape, generator=generator, dtype=torch.int64).to(torch.uint8)
    classes = int(labels.max()) + 1 if labels.numel() else 1
    return pixels, torch.randint(0, classes, labels.shape, generator=generator)


def class_means(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean feature of every class present ``[K, D]``, its share of the images ``[K]``, summing to 1)."""
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if len(features) == 0 or len(features) != len(labels):
        raise ValueError(
            f"class_means: expected one label per feature row, got {len(features)} rows, {len(labels)} labels"
        )
    classes, counts = np.unique(labels, return_counts=True)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    return means, counts / counts.sum()


def domain_emd(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray]) -> float:
    """EMD between two (class means, weights) sets with Euclidean ground cost (POT's exact solver)."""
    (xs, ws), (xt, wt) = source, target
    cost = ot.dist(xs, xt, metric="euclidean")
    return float(ot.emd2(np.asarray(ws, dtype=np.float64), np.asarray(wt, dtype=np.float64), cost))


def domain_similarity(emd: float, gamma: float) -> float:
    """``exp(-gamma * EMD)``: 1 for identical domains, towards 0 as they drift apart."""
    if gamma <= 0:
        raise ValueError(f"domain_similarity: expected gamma > 0, got {gamma}; the paper uses 0.01")
    return math.exp(-gamma * emd)


def rank(similarities: Mapping[str, float]) -> list[str]:
    """Source names from the most to the least similar (ties by name, so the order is reproducible)."""
    return sorted(similarities, key=lambda name: (-similarities[name], name))
