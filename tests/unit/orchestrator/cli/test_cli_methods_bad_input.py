"""Bad input to the new methods through the real CLI: one clear message naming the problem, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orchestrator.cli import main
from pipelines.models import create_model

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"


def run_cli(tmp_path: Path, config: str, *overrides: str) -> int:
    return main(["run", str(CONFIGS / config), f"run.workspace={tmp_path / 'ws'}", *overrides])


def refused(tmp_path: Path, capsys: pytest.CaptureFixture, config: str, *overrides: str) -> str:
    assert run_cli(tmp_path, config, *overrides) == 2
    assert not (tmp_path / "ws").exists(), "bad input must not create the workspace"
    return capsys.readouterr().err


def test_missing_pretrained_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = refused(tmp_path, capsys, "transfer_digits.yaml", f"init.source={tmp_path / 'nope.pt'}")
    assert "init.source: no weights file at" in message and "nope.pt" in message


def test_an_empty_weights_file_names_the_reason_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    message = refused(tmp_path, capsys, "transfer_digits.yaml", f"init.source={empty}")
    assert "is not a checkpoint Relay can read (the file is empty); point init.source at a torch state dict" in message


def test_weights_of_another_input_shape_name_the_layer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = tmp_path / "rgb.pt"
    torch.save(create_model("small_cnn", 10, 3).state_dict(), weights)
    message = refused(tmp_path, capsys, "class_balanced_digits.yaml", f"init.source={weights}")
    assert "does not fit model.name 'small_cnn'" in message
    assert "features.0.0.weight (weights [32, 3, 3, 3], network [32, 1, 3, 3])" in message


def test_a_kept_head_of_another_class_count_says_to_reset_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = tmp_path / "five.pt"
    torch.save(create_model("small_cnn", 5, 1).state_dict(), weights)
    message = refused(tmp_path, capsys, "class_balanced_digits.yaml", f"init.source={weights}", "init.head=keep")
    assert "the classifier fc differs: the weights have 5 outputs, the network 10" in message
    assert "reset the head" in message


def test_a_registered_model_without_a_tracking_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = refused(tmp_path, capsys, "transfer_digits.yaml", "init.source=models:/transfer-digits@newest")
    assert "init.source: no MLflow store at" in message


def test_unknown_hint_layers_list_the_valid_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = refused(tmp_path, capsys, "fitnets_digits.yaml", "fitnets.hint_layer=layer9")
    assert "fitnets.hint_layer: 'resnet18' has no hint layer 'layer9'; valid layers: conv1, layer1, layer2" in message


def test_a_source_with_no_overlap_in_image_shape(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = "domain.sources=[{name: cifar, dataset: cifar10, root: /data/cifar10}]"
    message = refused(tmp_path, capsys, "domain_similarity_digits.yaml", source)
    assert "domain.sources[0] (cifar): dataset 'cifar10' has images 3x32x32" in message
    assert "no overlap in image shape" in message


def test_an_empty_candidate_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = refused(tmp_path, capsys, "domain_similarity_digits.yaml", "domain.sources=[]")
    assert "domain.sources" in message and "the candidate list is empty" in message


def test_a_probe_on_a_stage_that_produced_no_features(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = refused(tmp_path, capsys, "pretext_crest_digits.yaml", "probe=[g00/evaluate]")
    assert "probe[0]: 'g00/evaluate' writes no model: nothing to probe" in message
    assert "stages with a model: pretext/pretrain, g00/train" in message


def test_a_pretrained_extractor_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = refused(tmp_path, capsys, "domain_similarity_digits.yaml", "domain.extractor=pretrained")
    assert "domain.extractor: 'pretrained' needs a model to embed with" in message
