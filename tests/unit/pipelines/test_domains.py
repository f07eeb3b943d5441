"""Domain similarity: EMD between weighted class means by hand (POT's solver), the ranking, the derived sources."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.domains import class_means, derive_source, domain_emd, domain_similarity, rank


def _domain(points: list[list[float]], weights: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(points, dtype=np.float64), np.array(weights, dtype=np.float64)


def test_emd_of_single_points_is_their_euclidean_distance() -> None:
    assert domain_emd(_domain([[0, 0]], [1]), _domain([[3, 4]], [1])) == pytest.approx(5.0)


def test_emd_moves_mass_by_the_cheapest_plan() -> None:
    # half the mass at 0 and half at 2 both travel 1 to reach 1
    assert domain_emd(_domain([[0], [2]], [0.5, 0.5]), _domain([[1]], [1])) == pytest.approx(1.0)
    # (0.75 at 0, 0.25 at 10) -> (0.5, 0.5): only 0.25 must move, over 10
    assert domain_emd(_domain([[0], [10]], [0.75, 0.25]), _domain([[0], [10]], [0.5, 0.5])) == pytest.approx(2.5)


def test_class_means_are_weighted_by_class_size() -> None:
    features = np.array([[0.0], [2.0], [10.0], [4.0]])
    means, weights = class_means(features, np.array([1, 1, 7, 1]))
    assert means.tolist() == [[2.0], [10.0]] and weights.tolist() == [0.75, 0.25]


def test_similarity_and_ranking() -> None:
    assert domain_similarity(5.0, 0.01) == pytest.approx(math.exp(-0.05))
    assert domain_similarity(0.0, 0.01) == 1.0
    assert rank({"b": 0.5, "a": 0.5, "c": 0.9}) == ["c", "a", "b"], "most similar first, ties by name"
    with pytest.raises(ValueError, match="gamma"):
        domain_similarity(1.0, 0.0)


def test_derived_sources_keep_the_shape_and_change_as_told() -> None:
    images = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(8) % 4
    generator = torch.Generator().manual_seed(0)
    same, same_labels = derive_source(images, labels, "none", 0.0, generator)
    assert same is images and same_labels is labels
    noisy, _ = derive_source(images, labels, "noise", 0.25, generator)
    assert noisy.dtype == torch.uint8 and noisy.shape == images.shape and not torch.equal(noisy, images)
    rotated, _ = derive_source(images, labels, "rotate", 90.0, generator)
    assert torch.equal(rotated, torch.rot90(images, 1, dims=(2, 3)))
    noise, noise_labels = derive_source(images, labels, "pure_noise", 0.0, generator)
    assert noise.shape == images.shape and set(noise_labels.tolist()) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="valid: none, noise, rotate, pure_noise"):
        derive_source(images, labels, "blur", 1.0, generator)
