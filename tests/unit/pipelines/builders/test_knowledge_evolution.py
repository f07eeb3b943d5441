"""Knowledge Evolution's builder: the DAG it unrolls and the config it validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_yaml, validate_config
from pipelines.builders import knowledge_evolution as ke
from tests.unit.pipelines.helpers import config, problems

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"


def test_one_generation_scores_no_slim_network() -> None:
    """The class-balanced loss's file is KE with one generation: its slim network, never trained apart, scored
    chance (slim_accuracy 0.1000) in the table; with more generations every evaluation still reads the masks."""
    one = {s.name: s for s in ke.build(config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 1})).stages}
    assert ke.MASKS not in one["g00/evaluate"].inputs
    two = {s.name: s for s in ke.build(config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 2})).stages}
    assert ke.MASKS in two["g00/evaluate"].inputs and ke.MASKS in two["g01/evaluate"].inputs


def test_one_generation_draws_no_masks() -> None:
    """The class-balanced loss's file (KE, one generation) drew masks that nothing read and logged their
    `split_masks/*` metrics in gen-00; with two generations the reset of g01 reads them."""
    file = validate_config(ke.KnowledgeEvolutionConfig, load_yaml(CONFIGS / "class_balanced_digits.yaml"))
    stages = ke.build(file).stages
    assert [stage.name for stage in stages] == ["data/split", "g00/train", "g00/evaluate"]
    assert not any(ke.MASKS in stage.inputs or ke.MASKS in stage.outputs for stage in stages)
    two = {
        s.name: s for s in ke.build(file.model_copy(update={"ke": ke.KnowledgeEvolutionSection(generations=2)})).stages
    }
    assert two["g00/split_masks"].outputs == (ke.MASKS,) and ke.MASKS in two["g01/train"].inputs


def test_wels_evaluations_read_no_masks() -> None:
    """WELS has no slim network to score, so its evaluations need no masks (they reran on a new ke.split_rate)."""
    stages = ke.build(config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 2, "ke.split_mode": "wels"})).stages
    by_name = {stage.name: stage for stage in stages}
    assert ke.MASKS not in by_name["g00/evaluate"].inputs and ke.MASKS not in by_name["g01/evaluate"].inputs
    assert ke.MASKS in by_name["g01/train"].inputs


def test_ke_unrolls_generations_with_masks_made_once_and_read_by_every_later_generation() -> None:
    pipeline = ke.build(
        config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 3, "ke.compute_matched_baseline": True})
    )
    names = [stage.name for stage in pipeline.stages]
    assert names == [
        "data/split",
        "g00/split_masks",
        "g00/train",
        "g00/evaluate",
        "g01/train",
        "g01/evaluate",
        "g02/train",
        "g02/evaluate",
        "baseline/train",
        "baseline/evaluate",
    ]
    producers = [stage.name for stage in pipeline.stages if ke.MASKS in stage.outputs]
    assert producers == ["g00/split_masks"]
    by_name = {stage.name: stage for stage in pipeline.stages}
    assert "g00/masks" not in by_name["g00/train"].inputs, "generation 0 trains from scratch"
    for k in (1, 2):
        train = by_name[f"g{k:02d}/train"]
        assert set(train.inputs) == {"data/split", f"g{k - 1:02d}/model", "g00/masks"}
        assert train.params["io"]["previous"] == f"g{k - 1:02d}/model"
    for k in (0, 1, 2):
        assert "g00/masks" in by_name[f"g{k:02d}/evaluate"].inputs
    assert pipeline.upstream("g02/train") >= {"g00/split_masks", "g01/train", "g00/train", "data/split"}


def test_ke_baseline_is_compute_matched_and_logged_in_the_last_generation() -> None:
    cfg = config(
        ke.KnowledgeEvolutionConfig, **{"ke.generations": 4, "train.steps": 50, "ke.compute_matched_baseline": True}
    )
    by_name = {stage.name: stage for stage in ke.build(cfg).stages}
    assert by_name["baseline/train"].params["train"].steps == 200
    assert by_name["baseline/train"].inputs == ("data/split",)
    assert by_name["baseline/train"].generation == by_name["baseline/evaluate"].generation == 3
    assert by_name["baseline/evaluate"].params["metric_prefix"] == "baseline_"
    plain = ke.build(config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 2}))
    assert not any(stage.name.startswith("baseline/") for stage in plain.stages)


def test_paper_scale_ke_config_holds_the_paper_settings() -> None:
    cfg = validate_config(ke.KnowledgeEvolutionConfig, load_yaml(CONFIGS / "ke_flower102.yaml"))
    assert (cfg.model.name, cfg.ke.split_mode, cfg.ke.split_rate, cfg.ke.generations) == ("resnet18", "kels", 0.5, 10)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.weight_decay, cfg.train.label_smoothing) == (
        0.256,
        32,
        1e-4,
        0.1,
    )
    assert cfg.train.steps == 200 * 32 and cfg.train.warmup_steps == 5 * 32


@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.2])
def test_split_rate_outside_the_open_interval_names_the_key(rate: float) -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"ke.split_rate": rate})
    assert "1 problem" in message and "ke.split_rate" in message and "strictly between 0 and 1" in message


def test_unknown_split_mode_names_the_key_and_the_valid_modes() -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"ke.split_mode": "random"})
    assert "ke.split_mode" in message and "kels" in message and "wels" in message and "'random'" in message


def test_warmup_longer_than_training_and_unknown_keys_are_reported_together() -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"train.steps": 10, "train.warmup_steps": 10, "ke.generatons": 3})
    assert "2 problem" in message and "train.warmup_steps" in message and "ke.generatons" in message
