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
