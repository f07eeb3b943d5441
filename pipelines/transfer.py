"""Transfer learning: a network starts from another network's weights (docs/ALGORITHMS.md, Transfer learning).

Every registered model ends in an ``nn.Linear`` named ``fc`` (pipelines.models), so "the head" is
every tensor under ``fc.`` and "the backbone" everything else. Starting a new task resets the head
(its classes differ) and copies the backbone; continuing the same task keeps both. Mismatches are
reported per layer, all at once, because the usual mistakes (another architecture, another class
count, weights of a wrapped model) each show up as a different list of layers.

Pure functions of tensors and shapes: ``weight_problems`` needs no torch at all, so the driver can
run it on shapes it read before any stage starts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipelines.models import to_float

HEAD = "fc"  # the classifier of every registered model (pipelines.models)
_SHOWN = 6  # layer names listed per kind of problem; the rest are counted


def is_head(name: str, head: str = HEAD) -> bool:
    """Whether a state-dict key belongs to the classifier ``head`` (``fc.weight``, ``fc.0.bias``...)."""
    return name == head or name.startswith(head + ".")


def state_dict_of(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a Relay checkpoint (``{"state_dict": ..., "model": ...}``) or a plain state dict.

    A ``module.`` prefix on every key (weights saved from a DataParallel/DDP wrapper) is removed.
    """
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict (name -> tensor), got {type(state).__name__} under 'state_dict'")
    tensors = {str(key): value for key, value in state.items() if isinstance(value, Tensor)}
    if not tensors:
        raise ValueError(
            "the checkpoint holds no tensors; expected a state dict (torch.save(model.state_dict(), path)) "
            "or a Relay checkpoint"
        )
    if all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    return tensors


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} (+{len(names) - _SHOWN} more)"


def weight_problems(
    network: Mapping[str, Sequence[int]],
    weights: Mapping[str, Sequence[int]],
    keep_head: bool,
    head: str = HEAD,
) -> list[str]:
    """Every way ``weights`` (key -> shape) do not fit ``network`` (key -> shape), one line per kind, layers named.

    With ``keep_head`` False the classifier is left out on both sides: a new task trains a new head.
    A head whose shapes differ gets its own line with both class counts, since the fix (reset the
    head) differs from that of a backbone mismatch (another architecture).
    """
    wanted = {k: tuple(v) for k, v in network.items() if keep_head or not is_head(k, head)}
    given = {k: tuple(v) for k, v in weights.items() if keep_head or not is_head(k, head)}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    differ = [k for k in sorted(set(wanted) & set(given)) if wanted[k] != given[k]]
    head_differs = [k for k in differ if is_head(k, head)]
    problems = []
    if missing:
        problems.append(f"layers the weights lack: {_listed(missing)}")
    if unexpected:
        problems.append(f"layers the network lacks: {_listed(unexpected)}")
    body = [f"{k} (weights {list(given[k])}, network {list(wanted[k])})" for k in differ if not is_head(k, head)]
    if body:
        problems.append(f"shapes differ: {_listed(body)}")
    if head_differs:
        classes = given[head_differs[0]][0], wanted[head_differs[0]][0]
        problems.append(
            f"the classifier {head} differs: the weights have {classes[0]} outputs, the network {classes[1]} "
            f"({_listed(head_differs)}); reset the head to train a new classifier"
        )
    return problems


def shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a state dict: what ``weight_problems`` compares."""
    return {key: tuple(value.shape) for key, value in state.items()}


def load_pretrained(model: nn.Module, checkpoint: Mapping[str, Any], keep_head: bool, head: str = HEAD) -> list[str]:
    """Copy pretrained weights into ``model`` in place; returns the keys copied.

    ``keep_head`` False leaves ``model``'s own (freshly initialised) classifier. Raises one
    ValueError listing every mismatched layer (``weight_problems``) before touching the model.
    """
    weights = state_dict_of(checkpoint)
    problems = weight_problems(shapes(model.state_dict()), shapes(weights), keep_head, head)
    if problems:
        raise ValueError("the pretrained weights do not fit the network: " + "; ".join(problems))
    selected = {key: value for key, value in weights.items() if keep_head or not is_head(key, head)}
    model.load_state_dict(selected, strict=False)  # what is left out is the head, checked above
    return sorted(selected)


def backbone(model: nn.Module, head: str = HEAD) -> nn.Module:
    """A copy of ``model`` in eval mode whose classifier is the identity: it returns what the classifier reads."""
    body = copy.deepcopy(model)
    setattr(body, head, nn.Identity())
    return body.eval()


@torch.no_grad()
def outputs(model: nn.Module, images: Tensor, batch_size: int, device: str | torch.device) -> np.ndarray:
    """The raw outputs (logits, or features) of ``model`` in eval mode on clean uint8 images, float32 ``[N, D]``."""
    was_training = model.training
    model.to(device).eval()
    try:
        chunks = [
            model(to_float(images[i : i + batch_size].to(device))).float().flatten(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("outputs: got 0 images; expected at least one")
    return torch.cat(chunks).numpy()


def embed(
    model: nn.Module, images: Tensor, batch_size: int, device: str | torch.device, head: str = HEAD
) -> np.ndarray:
    """Features (the classifier's input) of clean uint8 images ``[N, C, H, W]`` as float32 ``[N, D]``."""
    return outputs(backbone(model, head), images, batch_size, device)
