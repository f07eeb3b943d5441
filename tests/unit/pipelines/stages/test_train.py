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
from pipelines.stages import common, train, train_network
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
    return train_network._initial_model(ctx(seed=3), {"p": checkpoint, "m": masks}, params, in_channels=1)


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
    images, targets = train_network.pseudo_labeled_set(data, picks, table, "soft")
    assert torch.allclose(targets, torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.2, 0.8]]))
    train_images, picked = common.dataset_of(data).train.images, images.fetch([0, 1, 2])
    assert torch.equal(picked[1], train_images[5]) and torch.equal(picked[0], picked[2])
    _, hard = train_network.pseudo_labeled_set(data, picks, table, "hard")
    assert hard.tolist() == [1, 0, 1]


def test_crest_plus_defaults_to_the_bias_corrected_p_model() -> None:
    from pipelines.builders.crest import CrestSection, alignment_of
    from pipelines.schema import TrainSection

    assert train.fixmatch_settings(TrainSection(), alignment_of(CrestSection(), 0)).p_model_estimate == "debiased_ema"
    old = alignment_of(CrestSection(p_model_estimate="uniform_ema"), 0)
    assert train.fixmatch_settings(TrainSection(), old).p_model_estimate == "uniform_ema"


def test_crest_plus_aligns_toward_the_original_labeled_distribution_not_labeled_plus_picks(monkeypatch) -> None:
    from pipelines.builders import crest
    from pipelines.data import load_labels
    from pipelines.split import split_table
    from tests.unit.pipelines.helpers import config

    cfg = config(
        crest.CrestConfig,
        **{"data.name": "synthetic", "data.labeled_fraction": 0.2, "train.steps": 1, "crest.generations": 2},
    )
    params = next(s for s in crest.build(cfg).stages if s.name == "g01/train").params
    split = split_table(cfg.data.model_dump(), load_labels("synthetic", None))
    unlabeled, _ = common.subset_arrays(split, "unlabeled")
    picks = picks_table(unlabeled[:40], np.full(40, 9), np.ones(40), 0)  # 40 picks, all of class 9
    captured = {}

    def fake_train(model, images, targets, *args, **kwargs):
        captured.update(targets=targets, p_labeled=kwargs["p_labeled"])
        return model.eval()

    monkeypatch.setattr(train, "train_fixmatch", fake_train)
    train.train_generation(ctx("g01/train"), {params["io"]["split"]: split, params["io"]["picks"]: picks}, params)
    original = common.labeled_class_counts(split, 10)
    assert torch.allclose(captured["p_labeled"], torch.from_numpy(original / original.sum()).float())
    with_picks = torch.bincount(captured["targets"], minlength=10).float()
    assert with_picks[9] == original[9] + 40  # the picks do train the model ...
    assert captured["p_labeled"][9] < with_picks[9] / with_picks.sum()  # ... but do not move the target


def test_digits_are_never_flipped_unless_asked_natural_images_are(tmp_path) -> None:
    from pipelines.data import DATASETS, MIRROR_INVARIANT
    from pipelines.datasets import catalog, imports
    from pipelines.schema import AugmentSection

    assert set(MIRROR_INVARIANT) == set(DATASETS)
    default, asked = AugmentSection(), AugmentSection(weak={"flip": True})
    assert default.weak.flip is None  # left to the dataset
    assert not catalog.flips(default, DataSection(name="digits"))
    assert not catalog.flips(default, DataSection(name="synthetic"))
    assert catalog.flips(default, DataSection(name="cifar10", root="/nowhere"))
    assert catalog.flips(asked, DataSection(name="digits"))
    imports.import_dataset("synthetic", str(tmp_path / "shards"), {})  # a sharded dataset: its source decides
    assert not catalog.flips(default, DataSection(name="parquet", uri=str(tmp_path / "shards")))


def test_the_weak_view_of_a_digit_is_never_its_mirror_image() -> None:
    from pipelines.schema import AugmentSection

    torch.manual_seed(0)
    weak_fn, _ = train.augmenters(AugmentSection(), DataSection(name="digits"))
    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 2:6, 1] = 255  # a bar at the left edge
    assert int(weak_fn(x)[:, :, :, 4:].sum()) == 0  # shifted by at most 1 px, never mirrored to the right half


def test_data_image_size_reaches_the_images_the_loops_read() -> None:
    native, default = DataSection(image_size=8), DataSection()
    assert common.image_sources(native)[0].image_shape == (1, 8, 8)
    assert common.image_sources(default)[0].image_shape == (1, 16, 16)
    assert common.dataset_of(native).train.images.shape[-2:] == (8, 8)
