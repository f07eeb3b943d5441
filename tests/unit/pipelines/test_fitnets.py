"""FitNets: the hint loss by hand, the paper's regressor, every listed hint layer, and the hint stage's effect."""

from __future__ import annotations

import pytest
import torch

from pipelines.fitnets import HintRegressor, hint_loss, layer_extractor, output_shape
from pipelines.model_names import HINT_LAYERS, MODEL_NAMES, check_hint_layer, middle_layer
from pipelines.models import create_model
from pipelines.training.hint import HintSettings, train_hint


def test_hint_loss_is_half_the_squared_distance_per_element_averaged() -> None:
    hint = torch.zeros(2, 2, 1, 1)
    regressed = torch.tensor([3.0, 4.0, 0.0, 0.0]).reshape(2, 2, 1, 1)
    # image 1: 1/2 (3^2 + 4^2) / 2 elements = 6.25; image 2: 0; mean 3.125
    assert float(hint_loss(hint, regressed)) == pytest.approx(3.125)
    with pytest.raises(ValueError, match="match the hint"):
        hint_loss(hint, torch.zeros(2, 3, 1, 1))


def test_hint_loss_does_not_grow_with_the_size_of_the_hint() -> None:
    small, large = torch.ones(4, 2, 2, 2), torch.ones(4, 128, 8, 8)
    assert float(hint_loss(small, torch.zeros_like(small))) == pytest.approx(0.5)
    assert float(hint_loss(large, torch.zeros_like(large))) == pytest.approx(0.5)


def test_the_regressor_kernel_maps_the_guided_size_onto_the_hint() -> None:
    larger = HintRegressor((64, 8, 8), (128, 4, 4))
    assert larger.conv.kernel_size == (5, 5) and not larger.resize  # k = 8 - 4 + 1
    assert larger(torch.zeros(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    smaller = HintRegressor((32, 4, 4), (16, 8, 8))
    assert smaller(torch.zeros(2, 32, 4, 4)).shape == (2, 16, 8, 8)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_listed_hint_layer_exists_and_gives_a_feature_map(name: str) -> None:
    model = create_model(name, 10, 1)
    shapes = [output_shape(layer_extractor(model, layer), (1, 16, 16)) for layer in HINT_LAYERS[name]]
    assert all(len(shape) == 3 for shape in shapes)
    assert middle_layer(name) in HINT_LAYERS[name]


def test_an_unknown_layer_names_the_key_and_the_valid_layers() -> None:
    with pytest.raises(
        ValueError, match=r"fitnets.hint_layer: 'small_cnn' has no hint layer 'layer9'; valid layers: features.0"
    ):
        check_hint_layer("small_cnn", "layer9", "fitnets.hint_layer")


def test_the_hint_stage_trains_only_the_layers_up_to_the_guided_one() -> None:
    torch.manual_seed(0)
    teacher = create_model("small_cnn", 10, 1).eval()
    student = create_model("small_cnn", 10, 1)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    images = torch.randint(0, 255, (32, 1, 16, 16), dtype=torch.uint8)
    settings = HintSettings(steps=3, batch_size=16, lr=0.1, schedule="constant")
    train_hint(
        student, teacher, "features.2", "features.2", images, settings, None, "cpu", torch.Generator().manual_seed(0)
    )
    after = student.state_dict()
    assert not torch.equal(after["features.0.0.weight"], before["features.0.0.weight"])
    assert not torch.equal(after["features.2.0.weight"], before["features.2.0.weight"])
    assert torch.equal(after["features.4.0.weight"], before["features.4.0.weight"]), "past the guided layer"
    assert torch.equal(after["fc.weight"], before["fc.weight"])
