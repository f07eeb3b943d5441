"""The split_masks stage: one fit/reset split of the configured model, persisted as a weights-only artifact."""

from __future__ import annotations

import io

import pytest
import torch

from pipelines.builders.knowledge_evolution import MaskSplit
from pipelines.knowledge_evolution import make_split_masks, masks_to_state
from pipelines.models import create_model
from pipelines.schema import DataSection, ModelSection
from pipelines.stages import masks as masks_stage
from pipelines.stages import split as split_stage
from tests.unit.pipelines.helpers import ctx


def _masks_state(mode: str) -> dict:
    torch.manual_seed(0)
    masks = make_split_masks(create_model("small_cnn", 10, 1), 0.5, mode, torch.Generator().manual_seed(0))
    return {"masks": masks_to_state(masks), "split_rate": 0.5, "split_mode": mode, "model": "small_cnn"}


def test_masks_artifact_round_trips_through_a_weights_only_checkpoint() -> None:
    state = _masks_state("wels")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["split_mode"] == "wels"
    assert all(torch.equal(loaded["masks"][k], v) for k, v in state["masks"].items())


@pytest.mark.parametrize(("mode", "fraction"), [("kels", 0.25), ("wels", 0.5)])
def test_masks_stage_persists_one_split_of_the_configured_model(mode: str, fraction: float) -> None:
    data = DataSection(
        name="synthetic", head_count=100, imbalance_ratio=1.0, labeled_fraction=1.0, holdout_per_class=20, fold=0
    )
    split = split_stage.split_supervised(ctx(), {}, {"data": data, "io": {"split": "s"}}).outputs["s"]
    params = {
        "data": data,
        "model": ModelSection(),
        "ke": MaskSplit(split_rate=0.5, split_mode=mode),
        "io": {"split": "s", "masks": "m"},
    }
    result = masks_stage.make_masks(ctx(seed=7), {"s": split}, params)
    state = result.outputs["m"]
    assert state["split_mode"] == mode and set(state["masks"]) >= {"features.0.0.weight", "fc.weight"}
    assert result.metrics["fit_fraction"] == pytest.approx(fraction, abs=0.02)
    again = masks_stage.make_masks(ctx(seed=7), {"s": split}, params).outputs["m"]
    assert all(torch.equal(again["masks"][k], v) for k, v in state["masks"].items()), "same stage seed, same split"
