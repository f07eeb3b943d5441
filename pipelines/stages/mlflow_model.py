"""MLflow's python_function flavour for Relay's checkpoints.

Relay logs every model as the checkpoint it stored (state dict + the values that rebuild the
network) with an MLmodel file that names this module as its loader, so MLflow's own tools load a
registered model: ``mlflow.pyfunc.load_model("models:/NAME@gen-02").predict(images)`` gives class
probabilities, and ``mlflow models serve`` serves it. The input is what every Relay model sees:
uint8 images ``[N, C, H, W]`` (``[N, H, W]`` for one channel) at the size the run read its data
(``data.image_size``, else the dataset's own: digits 16, CIFAR 32); the signature carries the
channels and classes, and the size where the config set it. Scaling to [-1, 1] happens here, as
in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipelines.data import image_shape
from pipelines.datasets.shards import read_manifest
from pipelines.pseudo_label import predict_probs
from pipelines.stages.common import load_model

BATCH_SIZE = 256


class RelayClassifier:
    """A Relay network in eval mode behind pyfunc's ``predict``: uint8 images in, softmax probabilities out."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        images = torch.as_tensor(np.asarray(model_input))
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images (0..255), got {images.dtype}; Relay models scale them themselves")
        if images.ndim == 3:
            images = images.unsqueeze(1)  # [N, H, W]: one channel
        return predict_probs(self.network, images, BATCH_SIZE, "cpu")

    def get_raw_model(self) -> torch.nn.Module:
        """The network, which ``mlflow.pyfunc.load_model(...).get_raw_model()`` hands out (MLflow asks the wrapper).

        It takes float32 ``[N, C, H, W]`` scaled by ``pipelines.models.to_float`` and returns logits;
        ``predict`` takes the uint8 images and does that scaling itself.
        """
        return self.network


def trained_input_shape(data: Any) -> tuple[int, int, int]:
    """``[C, H, W]`` of the images a run with data section ``data`` trained on: what its models must be given.

    ``data.image_size`` when set, else the dataset's own size (digits 16, CIFAR 32), else the size a
    sharded dataset was imported at (its manifest). Why here: a network with a global pool accepts any
    size and answers wrongly at the wrong one, so callers must check the size before predicting.
    """
    shape = image_shape(data.name, data.image_size)
    if shape is None:
        shape = read_manifest(data.uri).image_shape
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _load_pyfunc(data_path: str) -> RelayClassifier:
    """pyfunc's loader hook: ``data_path`` is the model's ``checkpoint.pt``."""
    checkpoint = torch.load(data_path, map_location="cpu", weights_only=True)
    return RelayClassifier(load_model(checkpoint, "cpu"))
