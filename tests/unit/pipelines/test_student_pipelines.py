"""KE, Noisy Student and distillation: the DAGs the builders unroll, config validation, and the stage bodies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.dag import StageContext
from orchestrator.errors import ConfigError
from pipelines import distill, ke, noisy_student, split
from pipelines import student_stages as ss
from pipelines.knowledge_evolution import make_split_masks, masks_to_state
from pipelines.models import create_model
from pipelines.pseudo_label import picks_table, to_table
from pipelines.registry import PIPELINES
from pipelines.split import SPLIT_SCHEMA

CONFIGS = Path(__file__).resolve().parents[3] / "pipelines" / "configs"
OURS = {"ke": ke.KnowledgeEvolutionConfig, "noisy_student": noisy_student.NoisyStudentConfig, "distill": distill.DistillConfig}


def config(model_cls: type, **overrides: object) -> object:
    return validate_config(model_cls, apply_overrides({}, {k: v for k, v in overrides.items()}), source="test")


def problems(model_cls: type, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        config(model_cls, **overrides)
    return str(info.value)


def ctx(stage: str = "s", seed: int = 0) -> StageContext:
    return StageContext(run_id="r", stage=stage, generation=0, seed=seed, device="cpu", attempt=0)


# --- DAGs -----------------------------------------------------------------------------------


def test_ke_unrolls_generations_with_masks_made_once_and_read_by_every_later_generation() -> None:
    pipeline = ke.build(config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 3, "ke.compute_matched_baseline": True}))
    names = [stage.name for stage in pipeline.stages]
    assert names == ["data/split", "g00/split_masks", "g00/train", "g00/evaluate", "g01/train", "g01/evaluate",
                     "g02/train", "g02/evaluate", "baseline/train", "baseline/evaluate"]
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
    cfg = config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 4, "train.steps": 50, "ke.compute_matched_baseline": True})
    by_name = {stage.name: stage for stage in ke.build(cfg).stages}
    assert by_name["baseline/train"].params["train"]["steps"] == 200
    assert by_name["baseline/train"].inputs == ("data/split",)
    assert by_name["baseline/train"].generation == by_name["baseline/evaluate"].generation == 3
    assert by_name["baseline/evaluate"].params["metric_prefix"] == "baseline_"
    plain = ke.build(config(ke.KnowledgeEvolutionConfig, **{"ke.generations": 2}))
    assert not any(stage.name.startswith("baseline/") for stage in plain.stages)


def test_noisy_student_chains_teacher_pseudo_labels_filter_and_students() -> None:
    cfg = config(noisy_student.NoisyStudentConfig, **{"noisy.iterations": 2})
    pipeline = noisy_student.build(cfg)
    names = [stage.name for stage in pipeline.stages]
    assert names == ["data/split", "g00/train", "g00/evaluate", "g00/pseudo_label", "g00/filter",
                     "g01/train", "g01/evaluate", "g01/pseudo_label", "g01/filter", "g02/train", "g02/evaluate"]
    by_name = {stage.name: stage for stage in pipeline.stages}
    assert set(by_name["g01/train"].inputs) == {"data/split", "g00/picks", "g00/pseudo_labels"}
    assert set(by_name["g02/train"].inputs) == {"data/split", "g01/picks", "g01/pseudo_labels"}
    assert by_name["g01/pseudo_label"].inputs == ("data/split", "g01/model"), "the student labels for the next one"
    assert by_name["g00/train"].params["model"]["name"] == cfg.model.name
    assert by_name["g01/train"].params["model"] == {
        "name": cfg.student.name, "dropout": cfg.student.dropout, "stochastic_depth": cfg.student.stochastic_depth
    }


def test_distill_student_reads_the_teacher_and_the_baseline_does_not() -> None:
    pipeline = distill.build(config(distill.DistillConfig))
    by_name = {stage.name: stage for stage in pipeline.stages}
    assert list(by_name) == ["data/split", "g00/train", "g00/evaluate", "g01/train", "g01/evaluate", "baseline/train", "baseline/evaluate"]
    assert by_name["g01/train"].params["io"]["teacher"] == "g00/model"
    assert by_name["g01/train"].params["distill"] == {"temperature": 4.0, "alpha": 0.9}
    assert "g00/model" not in by_name["baseline/train"].inputs
    assert "distill" not in by_name["baseline/train"].params
    no_baseline = distill.build(config(distill.DistillConfig, **{"distill.student_baseline": False}))
    assert len(no_baseline.stages) == 5


@pytest.mark.parametrize("name", sorted(OURS))
def test_registry_entries_point_at_the_builders(name: str) -> None:
    spec = PIPELINES[name]
    assert spec.config_model is OURS[name]
    assert spec.summary["balanced_accuracy"] == "evaluate/balanced_accuracy"
    assert spec.build(spec.config_model()).stages


STUDENT_CONFIGS = [p for p in sorted(CONFIGS.glob("*.yaml")) if load_yaml(p).get("pipeline") in OURS]


@pytest.mark.parametrize("path", STUDENT_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_build(path: Path) -> None:
    data = load_yaml(path)
    assert path.read_text().splitlines()[0].startswith(f"# relay run pipelines/configs/{path.name}")
    cfg = validate_config(PIPELINES[data["pipeline"]].config_model, data, source=str(path))
    assert PIPELINES[data["pipeline"]].build(cfg).stages


def test_paper_scale_ke_config_holds_the_paper_settings() -> None:
    cfg = validate_config(ke.KnowledgeEvolutionConfig, load_yaml(CONFIGS / "ke_flower102.yaml"))
    assert (cfg.model.name, cfg.ke.split_mode, cfg.ke.split_rate, cfg.ke.generations) == ("resnet18", "kels", 0.5, 10)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.weight_decay, cfg.train.label_smoothing) == (0.256, 32, 1e-4, 0.1)
    assert cfg.train.steps == 200 * 32 and cfg.train.warmup_steps == 5 * 32


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.2])
def test_split_rate_outside_the_open_interval_names_the_key(rate: float) -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"ke.split_rate": rate})
    assert "1 problem" in message and "ke.split_rate" in message and "strictly between 0 and 1" in message


def test_unknown_split_mode_names_the_key_and_the_valid_modes() -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"ke.split_mode": "random"})
    assert "ke.split_mode" in message and "kels" in message and "wels" in message and "'random'" in message


def test_student_smaller_than_the_teacher_is_rejected_when_required() -> None:
    message = problems(noisy_student.NoisyStudentConfig, **{"model.name": "resnet18", "student.name": "small_cnn"})
    assert "1 problem" in message
    assert "student.name" in message and "student.require_larger=false" in message and "'resnet18'" in message
    allowed = config(noisy_student.NoisyStudentConfig, **{"model.name": "resnet18", "student.name": "small_cnn", "student.require_larger": False})
    assert allowed.student.name == "small_cnn"
    assert config(noisy_student.NoisyStudentConfig, **{"model.name": "small_cnn", "student.name": "resnet34"}).student.name == "resnet34"


@pytest.mark.parametrize(("model_cls", "key"), [(noisy_student.NoisyStudentConfig, "noisy.temperature"), (distill.DistillConfig, "distill.temperature")])
@pytest.mark.parametrize("value", [0, -1.0])
def test_non_positive_temperature_names_the_key(model_cls: type, key: str, value: float) -> None:
    message = problems(model_cls, **{key: value})
    assert "1 problem" in message and key in message and "> 0" in message


def test_warmup_longer_than_training_and_unknown_keys_are_reported_together() -> None:
    message = problems(ke.KnowledgeEvolutionConfig, **{"train.steps": 10, "train.warmup_steps": 10, "ke.generatons": 3})
    assert "2 problem" in message and "train.warmup_steps" in message and "ke.generatons" in message


# --- stage bodies -------------------------------------------------------------------------------


def _checkpoint_and_masks(mode: str = "kels") -> tuple[dict, dict]:
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    masks = make_split_masks(model, 0.5, mode, torch.Generator().manual_seed(0))
    state = {"masks": masks_to_state(masks), "split_rate": 0.5, "split_mode": mode, "model": "small_cnn"}
    return ss.stages.model_checkpoint(model, "small_cnn", 10, 1, 0.0), state


def _initial(reinit: str, checkpoint: dict, masks: dict) -> torch.nn.Module:
    params = {"io": {"previous": "p", "masks": "m"}, "model": {"name": "small_cnn", "dropout": 0.0, "stochastic_depth": 0.0}, "ke": {"reinit": reinit}, "data": {}}
    return ss._initial_model(ctx(seed=3), {"p": checkpoint, "m": masks}, params, in_channels=1)


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


def test_masks_artifact_round_trips_through_a_weights_only_checkpoint() -> None:
    _, state = _checkpoint_and_masks("wels")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["split_mode"] == "wels"
    assert all(torch.equal(loaded["masks"][k], v) for k, v in state["masks"].items())


def test_soft_pseudo_labels_follow_the_picks_including_duplicates() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    table = to_table([5, 9, 2], probs, 0, "m")
    picks = picks_table([9, 5, 9], [1, 0, 1], [0.8, 0.7, 0.8], 0)
    data = {"name": "synthetic", "root": None}
    images, targets = ss.pseudo_labeled_set(data, picks, table, "soft")
    assert torch.allclose(targets, torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.2, 0.8]]))
    train_images = ss.stages.dataset_of(data).train.images
    assert torch.equal(images[1], train_images[5]) and torch.equal(images[0], images[2])
    _, hard = ss.pseudo_labeled_set(data, picks, table, "hard")
    assert hard.tolist() == [1, 0, 1]


def test_filter_stage_balances_to_k_and_scores_the_picks() -> None:
    # confidences: class 0 -> ids 0 (.9), 1 (.8), 4 (.75), 2 (.7); class 1 -> id 3 (.8); id 5 (.6) is below 0.7
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.75, 0.25], [0.6, 0.4]], dtype=np.float32)
    table = to_table([0, 1, 2, 3, 4, 5], probs, 0, "m")
    split = pa.table({"sample_id": list(range(6)), "label": [0, 1, 0, 1, 0, 0], "subset": ["unlabeled"] * 6},
                     schema=SPLIT_SCHEMA)
    params = {"io": {"split": "s", "pseudo_labels": "p", "picks": "k"}, "data": {"name": "synthetic", "root": None},
              "min_confidence": 0.7, "per_class": 2, "generation": 0}
    result = ss.filter_pseudo_labels(ctx(), {"s": split, "p": table}, params)
    picks = result.outputs["k"]
    assert sorted(picks.column("sample_id").to_pylist()) == [0, 1, 3, 3], "top 2 of class 0; class 1 duplicated to K"
    assert picks.column("label").to_pylist() == [0, 0, 1, 1]
    metrics = result.metrics
    assert (metrics["kept/0"], metrics["kept/1"], metrics["kept_total"], metrics["kept_unique"]) == (2.0, 2.0, 4.0, 3.0)
    assert metrics["dropped_low_confidence"] == 1.0
    assert metrics["picks_accuracy"] == pytest.approx(0.75), "id 1 is truly class 1 but picked as 0"


def test_supervised_split_needs_no_unlabeled_images_but_still_checks_the_data() -> None:
    data = config(ke.KnowledgeEvolutionConfig, **{"data.name": "synthetic", "data.head_count": 100, "data.holdout_per_class": 20}).data.model_dump()
    assert split.preflight_split(data), "the CReST preflight insists on unlabeled images"
    assert split.preflight_supervised(data) == []
    assert "data" in split.preflight_supervised({**data, "head_count": 500})[0], "too few images per class is still caught"
    result = ss.split_supervised(ctx(), {}, {"data": data, "io": {"split": "data/split"}})
    assert (result.metrics["labeled_size"], result.metrics["unlabeled_size"], result.metrics["test_size"]) == (1000.0, 0.0, 200.0)


@pytest.mark.parametrize(("mode", "fraction"), [("kels", 0.25), ("wels", 0.5)])
def test_masks_stage_persists_one_split_of_the_configured_model(mode: str, fraction: float) -> None:
    data = {"name": "synthetic", "root": None, "head_count": 100, "imbalance_ratio": 1.0, "labeled_fraction": 1.0, "holdout_per_class": 20, "fold": 0}
    split = ss.split_supervised(ctx(), {}, {"data": data, "io": {"split": "s"}}).outputs["s"]
    params = {"data": data, "model": {"name": "small_cnn", "dropout": 0.0}, "ke": {"split_rate": 0.5, "split_mode": mode}, "io": {"split": "s", "masks": "m"}}
    result = ss.make_masks(ctx(seed=7), {"s": split}, params)
    state = result.outputs["m"]
    assert state["split_mode"] == mode and set(state["masks"]) >= {"features.0.0.weight", "fc.weight"}
    assert result.metrics["fit_fraction"] == pytest.approx(fraction, abs=0.02)
    again = ss.make_masks(ctx(seed=7), {"s": split}, params).outputs["m"]
    assert all(torch.equal(again["masks"][k], v) for k, v in state["masks"].items()), "same stage seed, same split"
