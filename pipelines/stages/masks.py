"""The `split_masks` stage: Knowledge Evolution's fit/reset split, drawn once.

See docs/ALGORITHMS.md, Knowledge Evolution: the split is an artifact every later generation reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestrator.dag import StageContext, StageResult
from pipelines.knowledge_evolution import fit_fraction, make_split_masks, masks_to_state
from pipelines.models import create_model
from pipelines.stages.common import image_sources, num_classes_of, output_name, stage_generator

log = logging.getLogger(__name__)


def make_masks(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Draw the fit/reset split ONCE (generation 0); every later generation loads this artifact."""
    data, network, ke = params["data"], params["model"], params["ke"]
    in_channels = image_sources(data)[0].image_shape[0]
    model = create_model(network.name, num_classes_of(data), in_channels, network.dropout)
    masks = make_split_masks(model, ke.split_rate, ke.split_mode, stage_generator(ctx))
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    state = {
        "masks": masks_to_state(masks),
        "split_rate": ke.split_rate,
        "split_mode": ke.split_mode,
        "model": network.name,
    }
    metrics = {"fit_fraction": kept / total, "masked_tensors": float(len(masks)), "masked_values": float(total)}
    log.debug("fit fraction per tensor: %s", fit_fraction(masks))
    return StageResult(outputs={output_name(params, "masks"): state}, metrics=metrics)
