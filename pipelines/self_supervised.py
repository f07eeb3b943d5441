"""Self-supervised pretext tasks: RotNet (rotation prediction) and SimCLR (NT-Xent), and the linear probe.

RotNet (Gidaris et al., ICLR 2018) rotates every image by 0, 90, 180 and 270 degrees and trains a
4-way classifier on which rotation it sees (plain CE over the 4B rotated images). SimCLR (Chen et
al., ICML 2020) passes two augmented views of each of N images through the encoder and a
projection head ``g`` and minimises, over the 2N views,

    l(i, j) = -log exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau),   sim = cosine

averaged over all 2N (i, j) positive pairs. Both keep the registered model's layout (the
classifier ``fc`` becomes the rotation head or the projection head), so a pretext model's backbone
loads into any later stage through transfer learning with the head reset. An encoder is judged by
a linear probe: logistic regression on its frozen features of the labeled split, scored on the
test split (scikit-learn).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from pipelines.evaluation import class_metrics
from pipelines.transfer import HEAD

ROTATIONS = 4  # 0, 90, 180, 270 degrees


def rotation_batch(images: Tensor) -> tuple[Tensor, Tensor]:
    """Each image at the 4 rotations, ``[4B, C, H, W]`` (rotation-major), with the rotation index ``[4B]`` as label."""
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation_batch: expected square images [B, C, H, H], got {tuple(images.shape)}")
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(ROTATIONS)])
    labels = torch.arange(ROTATIONS).repeat_interleave(images.shape[0])
    return rotated, labels


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent over the 2N views: view i's positive is the other view of its image, the 2N - 2 others negatives."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss: expected two [N, D] projections, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"nt_xent_loss: expected temperature > 0, got {temperature}; SimCLR uses 0.1 to 0.5")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # k != i
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(similarity, positives)


def with_projection_head(network: nn.Module, projection_dim: int, head: str = HEAD) -> nn.Module:
    """SimCLR's encoder + projection head: ``fc`` becomes Linear(d, d) - ReLU - Linear(d, projection_dim)."""
    features = getattr(network, head).in_features
    setattr(
        network,
        head,
        nn.Sequential(nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, projection_dim)),
    )
    return network


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    regularization: float = 1.0,
) -> dict[str, Any]:
    """Logistic regression on standardised frozen features; ``class_metrics`` of its test predictions."""
    if len(train_features) == 0 or len(np.unique(train_labels)) < 2:
        raise ValueError(
            f"linear_probe: expected labeled features of at least 2 classes, got {len(train_features)} rows of "
            f"{len(np.unique(train_labels))} class(es)"
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=2000))
    probe.fit(train_features, train_labels)
    return class_metrics(probe.predict(test_features), np.asarray(test_labels), num_classes)
