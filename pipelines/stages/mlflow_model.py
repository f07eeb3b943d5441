"""MLflow's python_function flavour for Relay's checkpoints.

Relay logs every model as the checkpoint it stored (state dict + the values that rebuild the
network) with an MLmodel file that names this module as its loader, so MLflow's own tools load a
registered model: ``mlflow.pyfunc.load_model("models:/NAME@gen-02").predict(images)`` gives class
probabilities, and ``mlflow models serve --env-manager local`` serves it (the loader is Relay's own
code, so it runs where Relay is installed; docs/API.md). The input is what every Relay model sees:
uint8 pixels 0..255, a numpy ``[N, C, H, W]`` at the size the run trained at (``data.image_size``,
else the dataset's own: digits 16, CIFAR 32). The signature is a rank-4 tensor, so pyfunc refuses
``[N, H, W]`` before ``predict`` runs (``relay.predict`` adds the channel axis itself). It carries
the channels, the classes and the trained height and width (recorded in the checkpoint by
``model_checkpoint``; a checkpoint from before that has them only where the config set
``data.image_size``). Scaling to [-1, 1] happens here, as in training.

Relay's pipelines name this module as their ``PipelineSpec.pyfunc_loader`` (pipelines/registry.py),
which the tracker writes into each model's MLmodel file; every model logged so far names it there,
so it keeps this name and its ``_load_pyfunc``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipelines.pseudo_label import predict_probs
from pipelines.stages.common import load_model

BATCH_SIZE = 256


class RelayClassifier:
    """A Relay network in eval mode behind pyfunc's ``predict``: uint8 images in, softmax probabilities out.

    ``image_size`` is the ``(H, W)`` the network trained at, None for a checkpoint that does not say:
    a network with a global pool runs at any size and answers wrongly at the wrong one, so ``predict``
    refuses another size rather than return probabilities.
    """

    def __init__(self, network: torch.nn.Module, image_size: tuple[int, int] | None = None) -> None:
        self.network = network
        self.image_size = image_size

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        images = self.checked_images(np.asarray(model_input))
        return predict_probs(self.network, torch.from_numpy(images), BATCH_SIZE, "cpu")

    def checked_images(self, images: np.ndarray) -> np.ndarray:
        """``images`` when they are uint8 ``[N, C, H, W]`` at the trained size, as a C-ordered writable array.

        A flipped view (``x[..., ::-1]``, ``np.flip``: negative strides) or a read-only one
        (``np.broadcast_to``) is copied (``torch_ready``): torch refuses the first and warns on the second.
        """
        if images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images (0..255), got {images.dtype}; Relay models scale them themselves")
        if images.ndim != 4:
            raise ValueError(
                f"expected images [N, C, H, W], got shape {list(images.shape)}; add the channel axis "
                "(images[:, None] for one channel)"
            )
        if self.image_size is not None and tuple(images.shape[2:]) != self.image_size:
            height, width = self.image_size
            raise ValueError(
                f"this model was trained on {height}x{width} images [N, C, {height}, {width}], got "
                f"{list(images.shape)}; resize them to {height}x{width} (channels first) before predicting"
            )
        return torch_ready(images)

    def get_raw_model(self) -> torch.nn.Module:
        """The network, which ``mlflow.pyfunc.load_model(...).get_raw_model()`` hands out (MLflow asks the wrapper).

        It takes float32 ``[N, C, H, W]`` scaled by ``pipelines.models.to_float`` and returns logits;
        ``predict`` takes the uint8 images and does that scaling itself.
        """
        return self.network


def torch_ready(images: np.ndarray) -> np.ndarray:
    """``images``, copied into a C-ordered writable array when torch cannot take them as they are.

    torch refuses any negative stride (numpy calls an array flipped along a length-1 axis
    contiguous, so the flags alone miss it) and warns on a read-only array.
    """
    if images.flags.c_contiguous and images.flags.writeable and min(images.strides, default=0) >= 0:
        return images
    return np.array(images, order="C", copy=True)


def trained_image_size(checkpoint: dict[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` the checkpoint's network trained at (``model_checkpoint`` records it), or None when not recorded."""
    if "image_height" not in checkpoint or "image_width" not in checkpoint:
        return None
    return (int(checkpoint["image_height"]), int(checkpoint["image_width"]))


def _load_pyfunc(data_path: str) -> RelayClassifier:
    """pyfunc's loader hook: ``data_path`` is the model's ``checkpoint.pt``."""
    checkpoint = torch.load(data_path, map_location="cpu", weights_only=True)
    return RelayClassifier(load_model(checkpoint, "cpu"), trained_image_size(checkpoint))
