"""Pretrained weights into the run: the `init/import` stage, and how a train stage starts from the `pretrained` role.

`import_weights` reads the weights the driver resolved (orchestrator.sources: a file, a registered
model, a stage of an earlier run), checks their sha256 against the digest the run was planned
with, and stores them as this run's artifact, so every train stage reads them from the artifact
store like any other model and MLflow shows them as a model of the run. `start_from` is what a
train stage does with a `pretrained` input, whichever stage wrote it (this import, a pretext stage,
an earlier generation).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

import pyarrow.fs as pafs
import torch
from torch import nn

from orchestrator.dag import StageContext, StageResult
from orchestrator.errors import ChangedWeightsError
from pipelines.stages.common import output_name
from pipelines.transfer import HEAD, load_pretrained, state_dict_of

META = ("model", "num_classes", "in_channels", "dropout")  # the plain values of a Relay checkpoint


def read_location(location: str) -> bytes:
    """The bytes at a location the driver resolved: a local path or any pyarrow URI (s3://, gs://, hdfs://...)."""
    filesystem, path = pafs.FileSystem.from_uri(location) if "://" in location else (pafs.LocalFileSystem(), location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def import_weights(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Read, verify and store the weights at ``params["location"]`` as the run's `model` output."""
    data = read_location(params["location"])
    digest = hashlib.sha256(data).hexdigest()
    if digest != params["digest"]:
        raise ChangedWeightsError(
            f"the weights at {params['location']} changed after run {ctx.run_id} was planned (sha256 {digest[:12]}, "
            f"planned with {params['digest'][:12]}): to go on with the run, put back the weights it was planned "
            f"with and `relay resume {ctx.run_id}`; to train from the new weights, start a new run (`relay run`)"
        )
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(
            f"{params['source']}: expected a state dict or a Relay checkpoint, got {type(loaded).__name__}"
        )
    state = state_dict_of(loaded)
    checkpoint = {"state_dict": state, "source": params["source"], **checkpoint_meta(loaded, state, params)}
    metrics = {"tensors": float(len(state)), "parameters": float(sum(t.numel() for t in state.values()))}
    return StageResult(outputs={output_name(params, "model"): checkpoint}, metrics=metrics)


def checkpoint_meta(loaded: Mapping[str, Any], state: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> dict:
    """The plain values that rebuild the network: the checkpoint's own, else the pipeline's `model` section's.

    A plain state dict carries none; its classifier's rows give the class count, so the imported
    model loads and evaluates like any model of the run (`stages.common.load_model`).
    """
    if all(key in loaded for key in META):
        return {key: loaded[key] for key in META}
    network, head = params["model"], state.get(f"{HEAD}.weight")
    return {
        "model": network.name,
        "num_classes": int(head.shape[0]) if head is not None else 0,
        "in_channels": params["in_channels"],
        "dropout": network.dropout,
    }


def start_from(model: nn.Module, pretrained: Mapping[str, Any] | None, init: Any, stage: str) -> nn.Module:
    """``model`` with the pretrained weights loaded (the head too when ``init.head`` is "keep"); as is without them.

    A mismatch names every layer (pipelines.transfer.weight_problems) and the stage, as a
    ValueError: a deterministic error, never retried.
    """
    if pretrained is None:
        return model
    try:
        load_pretrained(model, pretrained, keep_head=init.head == "keep")
    except ValueError as exc:
        where = pretrained.get("source") or "the pretrained model"
        raise ValueError(f"{stage}: {where}: {exc}") from exc
    return model


# The transfer knobs of a stage that starts from random weights (no `init` in its params): nothing frozen, one lr.
FROM_SCRATCH = {"freeze_backbone_steps": 0, "backbone_lr_scale": 1.0}


def schedule_of(init: Any | None) -> dict[str, Any]:
    """The training loops' transfer knobs (freeze_backbone_steps, backbone_lr_scale) of an `init` section.

    Without one, FROM_SCRATCH, given explicitly: settings_from refuses a settings field with no source.
    """
    if init is None:
        return dict(FROM_SCRATCH)
    return {"freeze_backbone_steps": init.freeze_backbone_steps, "backbone_lr_scale": init.backbone_lr_scale}
