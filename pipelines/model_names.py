"""What the config check needs to know about the registered networks, without building them (no torch).

pipelines.models.MODELS holds the builders; this module holds their names and sizes so that
`relay validate` and the driver of `relay run` never import torch. tests/unit/pipelines/
test_models.py keeps both in step: a new model is added to MODELS and here.
"""

from __future__ import annotations

MODEL_NAMES = ("small_cnn", "wrn28_2", "resnet18", "resnet34")
# The registered models with residual blocks, the only ones that take stochastic_depth.
RESIDUAL_MODELS = ("resnet18", "resnet34", "wrn28_2")
# Knowledge Evolution's ways to split a network into fit and reset hypotheses (pipelines.knowledge_evolution).
SPLIT_MODES = ("kels", "wels")

# Parameter counts are compared at config time, before the data is read: every network counted
# as built for this many classes and channels (the classifier is a small share of any model).
PROBE_CLASSES, PROBE_CHANNELS = 10, 3
PROBE_PARAMETERS = {"small_cnn": 94_762, "wrn28_2": 1_467_610, "resnet18": 11_173_962, "resnet34": 21_282_122}


def check_stochastic_depth(name: str, stochastic_depth: float) -> None:
    """ValueError unless stochastic_depth is in [0, 1) and, when positive, ``name`` has residual blocks."""
    if not 0.0 <= stochastic_depth < 1.0:
        raise ValueError(f"stochastic_depth: expected a value in [0, 1); got {stochastic_depth}")
    if stochastic_depth > 0.0 and name not in RESIDUAL_MODELS:
        raise ValueError(
            f"stochastic_depth: {name!r} has no residual blocks; got stochastic_depth {stochastic_depth}. "
            f"Use one of {', '.join(RESIDUAL_MODELS)} or set stochastic_depth to 0"
        )


# The layers FitNets may read a hint from or guide (pipelines.fitnets), by module name, in forward
# order: each outputs a feature map [B, C, H, W]. tests/unit/pipelines/test_fitnets.py builds every
# model and checks each name.
HINT_LAYERS = {
    "small_cnn": ("features.0", "features.1", "features.2", "features.3", "features.4"),
    "wrn28_2": ("conv1", "block1", "block2", "block3"),
    "resnet18": ("conv1", "layer1", "layer2", "layer3", "layer4"),
    "resnet34": ("conv1", "layer1", "layer2", "layer3", "layer4"),
}


def middle_layer(name: str) -> str:
    """FitNets' default: the middle hint layer of model ``name`` (the paper guides the student's middle layer)."""
    layers = HINT_LAYERS[name]
    return layers[(len(layers) - 1) // 2]


def check_hint_layer(model: str, layer: str, key: str) -> None:
    """ValueError naming ``key`` and the valid layers of ``model`` when ``layer`` is not one of them."""
    if layer not in HINT_LAYERS[model]:
        raise ValueError(f"{key}: {model!r} has no hint layer {layer!r}; valid layers: {', '.join(HINT_LAYERS[model])}")
