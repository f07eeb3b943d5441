"""The builders of transfer learning, LwF, FitNets and source selection, and what every pipeline gets from `init`,
`pretext` and `probe`: the DAG each unrolls and the bad input each refuses before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from pipelines.builders import crest, domain_similarity, fitnets, knowledge_evolution, lwf, transfer
from pipelines.registry import PIPELINES
from tests.unit.pipelines.helpers import config, problems


def stages_of(pipeline) -> dict:
    return {stage.name: stage for stage in pipeline.stages}


def test_transfer_pretrains_on_the_source_then_fine_tunes_beside_the_scratch_baseline() -> None:
    by_name = stages_of(transfer.build(config(transfer.TransferConfig, **{"init.freeze_backbone_steps": 7})))
    assert list(by_name) == [
        "data/split",
        "source/split",
        "g00/train",
        "g00/evaluate",
        "g01/train",
        "g01/evaluate",
        "baseline/train",
        "baseline/evaluate",
    ]
    assert by_name["source/split"].params["data"].classes == [0, 1, 2, 3, 4]
    assert by_name["source/split"].params["data"].labeled_fraction == 1.0
    assert by_name["g00/train"].params["io"]["split"] == "source/split"
    fine_tune = by_name["g01/train"]
    assert fine_tune.params["io"]["pretrained"] == "g00/model"
    assert fine_tune.params["init"].model_dump() == {
        "head": "reset",
        "freeze_backbone_steps": 7,
        "backbone_lr_scale": 1.0,
    }
    assert "pretrained" not in by_name["baseline/train"].params["io"]


def test_transfer_refuses_overlapping_source_and_target_classes() -> None:
    message = problems(transfer.TransferConfig, **{"transfer.source_classes": [4, 5, 6]})
    assert "share classes [5, 6]" in message and "disjoint" in message
    assert "<top level>" not in message  # the check compares two sections; its message names both keys


def test_lwf_records_the_old_outputs_and_trains_three_ways() -> None:
    by_name = stages_of(lwf.build(config(lwf.LwfConfig)))
    assert list(by_name) == [
        "data/split",
        "old/split",
        "g00/train",
        "g00/evaluate",
        "g01/record",
        "g01/train",
        "g01/evaluate",
        "finetune/train",
        "finetune/evaluate",
        "joint/train",
        "joint/evaluate",
    ]
    assert by_name["g01/record"].params["io"]["old_model"] == "g00/model"
    assert by_name["g01/train"].params["io"]["recorded"] == "g01/recorded"
    assert [by_name[f"{r}/train"].params["mode"] for r in ("g01", "finetune", "joint")] == ["lwf", "finetune", "joint"]
    assert "recorded" not in by_name["joint/train"].params["io"]
    assert by_name["g01/train"].params["lwf"].model_dump() == {"lambda_old": 1.0, "temperature": 2.0}


def test_fitnets_hint_stage_feeds_the_kd_student_and_the_baselines_stay_apart() -> None:
    by_name = stages_of(fitnets.build(config(fitnets.FitNetsConfig, **{"model.name": "resnet18"})))
    assert list(by_name)[:6] == ["data/split", "g00/train", "g00/evaluate", "g01/hint", "g01/train", "g01/evaluate"]
    hint = by_name["g01/hint"].params["fitnets"]
    assert (hint.hint_layer, hint.guided_layer) == ("layer2", "features.2"), "each network's middle layer"
    student = by_name["g01/train"]
    assert student.params["io"]["pretrained"] == "g01/hinted" and student.params["init"].head == "keep"
    assert student.params["io"]["teacher"] == "g00/model"
    assert "pretrained" not in by_name["kd/train"].params["io"] and "teacher" in by_name["kd/train"].params["io"]
    assert "teacher" not in by_name["baseline/train"].params["io"]


def test_fitnets_unknown_layers_name_the_keys_and_the_valid_layers() -> None:
    message = problems(fitnets.FitNetsConfig, **{"fitnets.hint_layer": "layer9", "fitnets.guided_layer": "conv7"})
    assert "fitnets.hint_layer: 'small_cnn' has no hint layer 'layer9'; valid layers: features.0" in message
    assert "fitnets.guided_layer" in message and "'conv7'" in message


def test_domain_similarity_ranks_then_pretrains_on_the_best() -> None:
    by_name = stages_of(domain_similarity.build(config(domain_similarity.DomainConfig)))
    assert list(by_name)[:5] == ["data/split", "g00/similarity", "g00/train", "g01/train", "g01/evaluate"]
    assert by_name["g00/train"].params["io"]["ranking"] == "g00/ranking"
    assert by_name["g01/train"].params["io"]["pretrained"] == "g00/model"
    assert [s.name for s in by_name["g00/similarity"].params["domain"].sources] == [
        "noisy-digits",
        "rotated-digits",
        "templates",
        "pure-noise",
    ]


def test_domain_similarity_refuses_an_empty_or_doubled_candidate_list() -> None:
    assert "the candidate list is empty" in problems(domain_similarity.DomainConfig, **{"domain.sources": []})
    twice = [{"name": "a"}, {"name": "a", "transform": "noise"}]
    assert "['a'] appear more than once" in problems(domain_similarity.DomainConfig, **{"domain.sources": twice})


def test_domain_similarity_preflight_refuses_a_source_of_another_image_shape() -> None:
    sources = [{"name": "cifar", "dataset": "cifar10", "root": "/nowhere"}, {"name": "noisy", "transform": "noise"}]
    checked = config(domain_similarity.DomainConfig, **{"domain.sources": sources})
    found = domain_similarity.source_problems(checked)
    assert found == [
        "domain.sources[0] (cifar): dataset 'cifar10' has images 3x32x32, the target 'digits' 1x16x16: no overlap "
        "in image shape to transfer through; choose a source with the target's image shape"
    ]


def test_a_pretext_stage_starts_every_crest_generation_and_is_probed() -> None:
    pipeline = crest.build(config(crest.CrestConfig, **{"pretext.method": "simclr", "crest.generations": 2}))
    by_name = stages_of(pipeline)
    assert by_name["pretext/pretrain"].generation is None
    assert [by_name[f"g0{k}/train"].params["io"]["pretrained"] for k in (0, 1)] == ["pretext/model"] * 2
    probe = by_name["pretext/probe"]
    assert probe.params["io"]["model"] == "pretext/model" and probe.params["io"]["split"] == "data/split"


def test_probes_of_named_stages_land_in_their_generation() -> None:
    pipeline = knowledge_evolution.build(config(knowledge_evolution.KnowledgeEvolutionConfig, probe=["g01/train"]))
    probe = stages_of(pipeline)["g01/probe"]
    assert probe.generation == 1 and probe.params["io"]["model"] == "g01/model"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("data/split", "'data/split' writes no model: nothing to probe"), ("g07/train", "'g07/train' is no stage")],
)
def test_a_probe_without_features_is_a_config_error_listing_the_stages_with_a_model(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        knowledge_evolution.build(config(knowledge_evolution.KnowledgeEvolutionConfig, probe=[name]))
    assert expected in str(info.value) and "probe[0]" in str(info.value)
    assert "stages with a model: g00/train, g01/train" in str(info.value)


def test_init_source_and_pretext_cannot_both_give_the_start() -> None:
    message = problems(crest.CrestConfig, **{"init.source": "w.pt", "pretext.method": "rotnet"})
    assert "w.pt) and pretext.method (rotnet) both give the starting weights" in message


@pytest.mark.parametrize("value", ["models:/only-a-name", "run:no-stage", "C:/x"])
def test_init_source_must_name_a_file_a_registered_model_or_a_run_stage(value: str) -> None:
    message = problems(crest.CrestConfig, **{"init.source": value})
    assert "init.source" in message and "models:/NAME@ALIAS" in message


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_pipeline_imports_init_source_and_trains_from_it(name: str, tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"any bytes: the digest is what enters the plan")
    spec = PIPELINES[name]
    pipeline = spec.build(config(spec.config_model, **{"init.source": str(weights)}))
    by_name = stages_of(pipeline)
    imported = by_name["init/import"].params
    assert imported["location"] == str(weights) and len(imported["digest"]) == 64
    readers = [
        s.name for s in pipeline.stages if s.params["io"].get("pretrained") == "init/model" or "init/model" in s.inputs
    ]
    assert readers, f"{name}: nothing starts from the imported weights"
