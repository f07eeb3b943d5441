"""The train stage bodies' helpers: KE's starting network of a later generation, Noisy Student's pseudo-labeled set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.builders.knowledge_evolution import ResetInit
from pipelines.knowledge_evolution import make_split_masks, masks_to_state
from pipelines.models import create_model
from pipelines.pseudo_label import picks_table, to_table
from pipelines.schema import DataSection, ModelSection
from pipelines.stages import common, train
from tests.unit.pipelines.helpers import ctx


def _checkpoint_and_masks(mode: str = "kels") -> tuple[dict, dict]:
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    masks = make_split_masks(model, 0.5, mode, torch.Generator().manual_seed(0))
    state = {"masks": masks_to_state(masks), "split_rate": 0.5, "split_mode": mode, "model": "small_cnn"}
    return common.model_checkpoint(model, "small_cnn", 10, 1, 0.0), state


def _initial(reinit: str, checkpoint: dict, masks: dict) -> torch.nn.Module:
    params = {
        "io": {"previous": "p", "masks": "m"},
        "model": ModelSection(),
        "ke": ResetInit(reinit=reinit),
        "data": DataSection(),
    }
    return train._initial_model(ctx(seed=3), {"p": checkpoint, "m": masks}, params, in_channels=1)


@pytest.mark.parametrize("reinit", ["kaiming", "zero"])
def test_later_generations_keep_the_fit_hypothesis_and_reset_the_rest(reinit: str) -> None:
    checkpoint, masks = _checkpoint_and_masks()
    model = _initial(reinit, checkpoint, masks)
    for name, mask in masks["masks"].items():
        before, after, keep = checkpoint["state_dict"][name], model.get_parameter(name).detach(), mask.bool()
        assert torch.equal(after[keep], before[keep]), f"fit hypothesis of {name} changed"
        if reinit == "zero":
            assert torch.all(after[~keep] == 0)
        else:
            assert not torch.equal(after[~keep], before[~keep]), f"reset hypothesis of {name} kept"
    bn = "features.0.1.running_mean"
    assert torch.equal(model.state_dict()[bn], checkpoint["state_dict"][bn]), "BatchNorm is never reset"


def test_soft_pseudo_labels_follow_the_picks_including_duplicates() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    table = to_table([5, 9, 2], probs, 0, "m")
    picks = picks_table([9, 5, 9], [1, 0, 1], [0.8, 0.7, 0.8], 0)
    data = DataSection(name="synthetic")
    images, targets = train.pseudo_labeled_set(data, picks, table, "soft")
    assert torch.allclose(targets, torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.2, 0.8]]))
    train_images, picked = common.dataset_of(data).train.images, images.fetch([0, 1, 2])
    assert torch.equal(picked[1], train_images[5]) and torch.equal(picked[0], picked[2])
    _, hard = train.pseudo_labeled_set(data, picks, table, "hard")
    assert hard.tolist() == [1, 0, 1]


def test_crest_plus_defaults_to_the_bias_corrected_p_model() -> None:
    from pipelines.builders.crest import AlignmentSchedule, CrestSection
    from pipelines.schema import TrainSection, part

    schedule = part(AlignmentSchedule, CrestSection())
    assert train.fixmatch_settings(TrainSection(), schedule, 0).p_model_estimate == "debiased_ema"
    old = part(AlignmentSchedule, CrestSection(p_model_estimate="uniform_ema"))
    assert train.fixmatch_settings(TrainSection(), old, 0).p_model_estimate == "uniform_ema"
