"""Transfer learning's weight loading: what fits, every mismatch named by layer, features of the backbone."""

from __future__ import annotations

import pytest
import torch

from pipelines.models import create_model
from pipelines.stages.common import model_checkpoint
from pipelines.transfer import embed, load_pretrained, state_dict_of, weight_problems

NETWORK = {"conv.weight": (8, 1, 3, 3), "conv.bias": (8,), "fc.weight": (10, 8), "fc.bias": (10,)}


def test_fitting_weights_have_no_problems_with_or_without_the_head() -> None:
    assert weight_problems(NETWORK, NETWORK, keep_head=True) == []
    five_classes = {**NETWORK, "fc.weight": (5, 8), "fc.bias": (5,)}
    assert weight_problems(NETWORK, five_classes, keep_head=False) == [], "a reset head may have other classes"


def test_a_class_count_mismatch_names_the_classifier_and_the_fix() -> None:
    five_classes = {**NETWORK, "fc.weight": (5, 8), "fc.bias": (5,)}
    (problem,) = weight_problems(NETWORK, five_classes, keep_head=True)
    assert "the classifier fc differs: the weights have 5 outputs, the network 10" in problem
    assert "fc.bias, fc.weight" in problem and "reset the head" in problem


def test_every_kind_of_backbone_mismatch_is_listed_with_its_layers() -> None:
    weights = {"conv.weight": (8, 3, 3, 3), "extra.weight": (4,), "fc.weight": (10, 8), "fc.bias": (10,)}
    problems = weight_problems(NETWORK, weights, keep_head=False)
    assert problems == [
        "layers the weights lack: conv.bias",
        "layers the network lacks: extra.weight",
        "shapes differ: conv.weight (weights [8, 3, 3, 3], network [8, 1, 3, 3])",
    ]


def test_long_lists_are_cut_and_counted() -> None:
    network = {f"layer{i}.weight": (1,) for i in range(10)}
    (problem,) = weight_problems(network, {}, keep_head=False)
    assert problem.endswith("(+4 more)")


def test_load_pretrained_copies_the_backbone_and_keeps_the_new_head() -> None:
    torch.manual_seed(0)
    source = create_model("small_cnn", 5, 1)
    torch.manual_seed(1)
    target = create_model("small_cnn", 10, 1)
    head_before = target.fc.weight.detach().clone()
    checkpoint = model_checkpoint(source, "small_cnn", 5, 1, 0.0)
    loaded = load_pretrained(target, checkpoint, keep_head=False)
    assert "features.0.0.weight" in loaded and not any(key.startswith("fc.") for key in loaded)
    assert torch.equal(target.features[0][0].weight, source.features[0][0].weight)
    assert torch.equal(target.fc.weight, head_before)


def test_load_pretrained_refuses_another_architecture_before_touching_the_model() -> None:
    target = create_model("small_cnn", 10, 1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="layers the network lacks: bn1.bias"):
        load_pretrained(target, create_model("resnet18", 10, 1).state_dict(), keep_head=False)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_state_dicts_are_read_plain_wrapped_or_from_ddp() -> None:
    state = {"a.weight": torch.ones(2)}
    assert state_dict_of(state) == state
    assert state_dict_of({"state_dict": state, "model": "x"}) == state
    assert set(state_dict_of({"module.a.weight": torch.ones(2)})) == {"a.weight"}
    with pytest.raises(ValueError, match="no tensors"):
        state_dict_of({"model": "small_cnn"})


def test_embed_returns_the_classifiers_input() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    images = torch.randint(0, 255, (5, 1, 16, 16), dtype=torch.uint8)
    features = embed(model, images, batch_size=2, device="cpu")
    assert features.shape == (5, 128)
    logits = model.eval()(((images.float() / 255) - 0.5) / 0.5)
    assert torch.allclose(torch.from_numpy(features) @ model.fc.weight.T + model.fc.bias, logits, atol=1e-5)
