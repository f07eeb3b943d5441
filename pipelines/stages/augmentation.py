"""The input noise of the training stages: a config's `augment` section as uint8 -> uint8 functions.

Shared by the CReST and the supervised `train` bodies, and kept apart from both so that neither
body's cache key depends on the other's module.
"""

from __future__ import annotations

import functools
from typing import Any

from pipelines.augment import strong_augment, weak_augment
from pipelines.datasets.catalog import flips


def augmenters(augment: Any, data: Any) -> tuple[Any, Any]:
    """(weak, strong) uint8 -> uint8 augmentations of the `augment` section; the strong view starts with the weak one.

    ``data`` (the `data` section) decides a null `augment.weak.flip`: digits are never mirrored unless asked.
    """
    weak, strong, flip = augment.weak, augment.strong, flips(augment, data)
    weak_fn = functools.partial(weak_augment, flip=flip, pad_fraction=weak.pad_fraction)
    strong_fn = functools.partial(strong_augment, **strong.model_dump(), flip=flip, pad_fraction=weak.pad_fraction)
    return weak_fn, strong_fn


def input_noise(kind: str, augment: Any, data: Any) -> Any:
    """The input noise of a training stage: none, weak (flip + crop) or strong (+ RandAugment, Cutout)."""
    if kind == "none":
        return None
    return augmenters(augment, data)[0 if kind == "weak" else 1]
