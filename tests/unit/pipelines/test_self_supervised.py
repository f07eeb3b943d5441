"""RotNet's rotations, SimCLR's NT-Xent by hand, the projection head, and the linear probe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.models import create_model
from pipelines.self_supervised import linear_probe, nt_xent_loss, rotation_batch, with_projection_head
from pipelines.training.pretext import PretextSettings, pretext_loss


def test_rotation_batch_rotates_by_quarter_turns_with_the_turn_as_label() -> None:
    image = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8).reshape(1, 1, 2, 2)
    rotated, labels = rotation_batch(image)
    assert labels.tolist() == [0, 1, 2, 3]
    assert rotated[0, 0].tolist() == [[1, 2], [3, 4]]
    assert rotated[1, 0].tolist() == [[2, 4], [1, 3]]  # 90 degrees counter-clockwise
    assert rotated[2, 0].tolist() == [[4, 3], [2, 1]]
    assert rotated[3, 0].tolist() == [[3, 1], [4, 2]]


def test_nt_xent_by_hand_for_two_orthogonal_images() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # view 0 = (1, 0): similarity 1 with its positive (view 2), 0 with views 1 and 3 (tau 1):
    # -log(e / (e + 2)) = log(1 + 2/e) = 0.5514447, the same for every view
    assert float(nt_xent_loss(z, z.clone(), 1.0)) == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)
    # tau 0.5 sharpens: -log(e^2 / (e^2 + 2))
    assert float(nt_xent_loss(z, z.clone(), 0.5)) == pytest.approx(math.log(1 + 2 / math.e**2), abs=1e-6)


def test_nt_xent_ignores_the_scale_of_the_projections_and_checks_its_inputs() -> None:
    z1, z2 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.randn(4, 3)
    assert torch.allclose(nt_xent_loss(z1, z2, 0.5), nt_xent_loss(3 * z1, 0.5 * z2, 0.5))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(z1, z2, 0.0)
    with pytest.raises(ValueError, match="two"):
        nt_xent_loss(z1, z2[:2], 0.5)


def test_the_projection_head_replaces_the_classifier() -> None:
    network = with_projection_head(create_model("small_cnn", 4, 1), 16)
    assert network(torch.zeros(2, 1, 16, 16)).shape == (2, 16)
    assert {k for k in network.state_dict() if k.startswith("fc.")} == {
        "fc.0.weight",
        "fc.0.bias",
        "fc.2.weight",
        "fc.2.bias",
    }


@pytest.mark.parametrize("method", ["rotnet", "simclr"])
def test_each_pretext_loss_is_finite_and_has_gradients(method: str) -> None:
    torch.manual_seed(0)
    network = create_model("small_cnn", 4, 1)
    if method == "simclr":
        network = with_projection_head(network, 8)
    images = torch.randint(0, 255, (6, 1, 16, 16), dtype=torch.uint8)
    noisy = lambda x: (x.int() + torch.randint(0, 20, x.shape)).clamp(0, 255).to(torch.uint8)  # noqa: E731
    loss = pretext_loss(network, images, PretextSettings(method=method, steps=1), lambda x: x, noisy, "cpu")
    loss.backward()
    assert torch.isfinite(loss) and network.features[0][0].weight.grad is not None
    if method == "rotnet":
        assert loss.item() == pytest.approx(math.log(4), abs=0.5), "near chance before training"


def test_linear_probe_separates_separable_features() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    labels = np.repeat(np.arange(3), 20)
    features = centers[labels] + rng.normal(size=(60, 2))
    result = linear_probe(features[::2], labels[::2], features[1::2], labels[1::2], 3)
    assert result["accuracy"] == 1.0 and result["balanced_accuracy"] == 1.0
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(features[:5], np.zeros(5), features, labels, 3)
