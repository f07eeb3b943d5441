"""Relay's pipelines name their own pyfunc loader in their specs, and models logged before that still load.

The tracker writes the loader a pipeline's spec declares into each model's MLmodel file. Relay's
pipelines declare ``pipelines.stages.mlflow_model``, the module every MLmodel file logged by earlier
Relay runs names: one written here as those runs wrote it (not by today's ``write_mlmodel``) must
load and predict through MLflow's own ``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.models import Model
from mlflow.pyfunc import add_to_model

from orchestrator.config import load_yaml, validate_config
from pipelines.models import create_model
from pipelines.registry import PIPELINES, PYFUNC_LOADER
from pipelines.stages.common import model_checkpoint

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"
EARLIER_RUNS_LOADER = "pipelines.stages.mlflow_model"  # what MLmodel files of earlier runs name


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_relay_pipeline_declares_the_loader_earlier_models_name_and_its_input_shape(name: str) -> None:
    spec = PIPELINES[name]
    assert spec.pyfunc_loader == PYFUNC_LOADER == EARLIER_RUNS_LOADER
    assert callable(importlib.import_module(spec.pyfunc_loader)._load_pyfunc)
    assert spec.input_shape is not None


def test_the_input_shape_of_a_relay_config_is_its_datasets() -> None:
    spec = PIPELINES["crest"]
    config = validate_config(spec.config_model, load_yaml(SMOKE), source=str(SMOKE))
    assert spec.input_shape(config) == (1, 16, 16)
    sized = validate_config(spec.config_model, load_yaml(SMOKE) | {"data": {"name": "digits", "image_size": 8}})
    assert spec.input_shape(sized) == (1, 8, 8)


def test_a_model_logged_by_an_earlier_run_still_loads_and_predicts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = model_checkpoint(create_model("small_cnn", 10, 1), "small_cnn", 10, 1, 0.0, (16, 16))
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    earlier = Model()  # as the MLmodel files of earlier runs were written: the loader named as a constant
    add_to_model(earlier, loader_module=EARLIER_RUNS_LOADER, data="checkpoint.pt")
    earlier.save(str(tmp_path / "MLmodel"))

    model = mlflow.pyfunc.load_model(str(tmp_path))
    probabilities = model.predict(np.zeros((2, 1, 16, 16), np.uint8))
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
