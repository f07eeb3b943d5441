"""The new stage bodies on real digits, in this process: the source ranking, the weight import, probes, class subsets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from orchestrator.dag import Stage, StageResult
from pipelines.builders import domain_similarity, knowledge_evolution, transfer
from pipelines.models import create_model
from pipelines.stages import common, pretext, pretrained
from tests.unit.pipelines.helpers import config, ctx


def run(stage: Stage, artifacts: dict, seed: int = 0) -> StageResult:
    """One stage body with its inputs from ``artifacts``; its outputs join them."""
    result = stage.fn(ctx(stage.name, seed), {name: artifacts[name] for name in stage.inputs}, stage.params)
    artifacts.update(result.outputs)
    return result


def _ranking(**overrides: object) -> tuple[pa.Table, StageResult]:
    pipeline = domain_similarity.build(config(domain_similarity.DomainConfig, **overrides))
    by_name = {stage.name: stage for stage in pipeline.stages}
    artifacts: dict = {}
    run(by_name["data/split"], artifacts)
    result = run(by_name["g00/similarity"], artifacts)
    return artifacts["g00/ranking"], result


def test_the_ranking_puts_the_most_related_source_first() -> None:
    """The default candidates: digits with noise, digits rotated 90 degrees, class templates, pure noise."""
    ranking, result = _ranking()
    order = ranking.column("source").to_pylist()
    assert order[0] == "noisy-digits", ranking.to_pydict()
    similarity = ranking.column("similarity").to_numpy()
    assert np.all(np.diff(similarity) <= 0) and np.all((similarity > 0) & (similarity <= 1))
    assert result.metrics["noisy-digits"] == pytest.approx(similarity[0])


def test_the_ranking_follows_how_far_a_source_drifts_from_the_target() -> None:
    """The same digits at growing noise: each step away from the target lowers the similarity."""
    sources = [
        {"name": f"noise-{strength}", "transform": "noise", "strength": strength} for strength in (0.8, 0.1, 0.4)
    ]
    ranking, _ = _ranking(**{"domain.sources": sources})
    assert ranking.column("source").to_pylist() == ["noise-0.1", "noise-0.4", "noise-0.8"], ranking.to_pydict()


def test_rank_sources_uses_the_target_split_unlabeled_images_only() -> None:
    pipeline = domain_similarity.build(config(domain_similarity.DomainConfig))
    by_name = {stage.name: stage for stage in pipeline.stages}
    artifacts: dict = {}
    run(by_name["data/split"], artifacts)
    run(by_name["g00/similarity"], artifacts)
    sizes = dict(
        zip(
            artifacts["g00/ranking"].column("source").to_pylist(), artifacts["g00/ranking"].column("images").to_pylist()
        )
    )
    unlabeled = common.subset_arrays(artifacts["data/split"], "unlabeled")[0]
    assert sizes["noisy-digits"] == sizes["rotated-digits"] == len(unlabeled)
    assert sizes["templates"] == 2000, "another dataset: all of its images"


def test_class_subsets_relabel_and_never_share_images_between_tasks() -> None:
    checked = config(transfer.TransferConfig)
    by_name = {stage.name: stage for stage in transfer.build(checked).stages}
    artifacts: dict = {}
    run(by_name["data/split"], artifacts)
    run(by_name["source/split"], artifacts)
    target, source = artifacts["data/split"], artifacts["source/split"]
    assert set(target.column("label").to_pylist()) == set(source.column("label").to_pylist()) == {0, 1, 2, 3, 4}
    assert not set(target.column("sample_id").to_pylist()) & set(source.column("sample_id").to_pylist())
    digits = common.dataset_of(checked.data).train.labels.numpy()
    ids = target.column("sample_id").to_numpy()
    assert np.array_equal(digits[ids] - 5, target.column("label").to_numpy()), "class 5 + k is label k"
    assert common.num_classes_of(checked.data) == 5


def _saved(tmp_path: Path, payload: dict) -> tuple[Path, str]:
    path = tmp_path / "weights.pt"
    torch.save(payload, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _import_params(path: Path, digest: str) -> dict:
    section = config(knowledge_evolution.KnowledgeEvolutionConfig)
    return {"source": str(path), "location": str(path), "digest": digest, "model": section.model, "in_channels": 1}


def test_a_plain_state_dict_is_imported_as_a_loadable_relay_checkpoint(tmp_path: Path) -> None:
    network = create_model("small_cnn", 7, 1)
    path, digest = _saved(tmp_path, network.state_dict())
    params = {**_import_params(path, digest), "io": {"model": "init/model"}}
    result = pretrained.import_weights(ctx(), {}, params)
    checkpoint = result.outputs["init/model"]
    assert (checkpoint["model"], checkpoint["num_classes"], checkpoint["in_channels"]) == ("small_cnn", 7, 1)
    loaded = common.load_model(checkpoint, "cpu")
    assert torch.equal(loaded.fc.weight, network.fc.weight)


def test_weights_changed_since_the_plan_are_refused(tmp_path: Path) -> None:
    path, digest = _saved(tmp_path, create_model("small_cnn", 7, 1).state_dict())
    torch.save({"other": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="changed after run .* was planned"):
        pretrained.import_weights(ctx(), {}, {**_import_params(path, digest), "io": {"model": "init/model"}})


def test_start_from_names_the_stage_the_source_and_every_layer() -> None:
    checkpoint = {"state_dict": create_model("resnet18", 10, 1).state_dict(), "source": "models:/teacher@newest"}
    init = config(knowledge_evolution.KnowledgeEvolutionConfig).init
    with pytest.raises(ValueError, match=r"g00/train: models:/teacher@newest: the pretrained weights do not fit"):
        pretrained.start_from(create_model("small_cnn", 10, 1), checkpoint, init, "g00/train")
    assert pretrained.start_from(create_model("small_cnn", 10, 1), None, init, "g00/train") is not None


def test_a_probe_scores_a_models_frozen_features_on_the_test_split() -> None:
    checked = config(knowledge_evolution.KnowledgeEvolutionConfig, probe=["g00/train"], **{"data.head_count": 60})
    by_name = {stage.name: stage for stage in knowledge_evolution.build(checked).stages}
    artifacts: dict = {}
    run(by_name["data/split"], artifacts)
    torch.manual_seed(0)
    artifacts["g00/model"] = common.model_checkpoint(create_model("small_cnn", 10, 1), "small_cnn", 10, 1, 0.0)
    result = pretext.probe_model(ctx(), artifacts, by_name["g00/probe"].params)
    # random convolutional features of digits are far from useless: well above the 10% of chance
    assert 0.3 < result.metrics["accuracy"] <= 1.0
    assert result.metrics["labeled_size"] == 600
    assert result.outputs["g00/probe_scores"].num_rows == 10
