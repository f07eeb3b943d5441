"""A logged model is loaded by the code of the pipeline that made it, which its spec names, never by Relay's.

The engine knows no pipeline: a plug-in's models once named Relay's own loader module in their
MLmodel files (a constant in the tracking layer), so MLflow would have loaded a plug-in's checkpoint
with Relay's code. Here a plug-in's loader module is written for real (it reads its checkpoint as
text, no torch), the real tracker logs and registers a model in a real SQLite MLflow store, and
``mlflow.pyfunc.load_model("models:/NAME@gen-00")`` answers through the plug-in's loader. The Python
API takes the loader and the input shape from the run's spec too, and says what a spec lacks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from orchestrator.cli.api import models as api_models
from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.errors import InputError
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.lineage import write_mlmodel
from orchestrator.tracking.mlflow_tracker import MlflowTracker

PLUGIN_LOADER = "relay_toy_loader"
PLUGIN_CODE = '''
import numpy as np


class Echo:
    """Answers every image with the checkpoint's text length: proof that this module loaded the model."""

    def __init__(self, text):
        self.text = text

    def predict(self, model_input, params=None):
        return np.full((len(model_input), 1), float(len(self.text)), dtype=np.float32)


def _load_pyfunc(path):
    with open(path) as stored:
        return Echo(stored.read())
'''
CHECKPOINT = "a plug-in's checkpoint"


@pytest.fixture
def plugin_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A plug-in's pyfunc loader module, importable as PLUGIN_LOADER for this test only."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{PLUGIN_LOADER}.py").write_text(PLUGIN_CODE)
    monkeypatch.syspath_prepend(str(folder))
    yield PLUGIN_LOADER
    sys.modules.pop(PLUGIN_LOADER, None)


def spec(**declared) -> PipelineSpec:
    return PipelineSpec(name="toy", config_model=dict, build=lambda config: None, **declared)


def test_the_mlmodel_names_the_loader_the_pipeline_declares(tmp_path: Path) -> None:
    write_mlmodel(tmp_path, {"in_channels": 1, "num_classes": 3}, 8, "relay_toy.models")
    flavor = Model.load(str(tmp_path / "MLmodel")).flavors["python_function"]
    assert flavor["loader_module"] == "relay_toy.models" and flavor["data"] == "checkpoint.pt"


def test_a_pipeline_that_declares_no_loader_gets_models_mlflow_will_not_load_with_another_pipelines_code(
    tmp_path: Path,
) -> None:
    (tmp_path / "checkpoint.pt").write_text(CHECKPOINT)
    write_mlmodel(tmp_path, {"in_channels": 1, "num_classes": 3}, 8, None)
    model = Model.load(str(tmp_path / "MLmodel"))
    assert "python_function" not in model.flavors
    assert model.signature.inputs.inputs[0].shape == (-1, 1, 8, 8), "the signature is written all the same"
    with pytest.raises(MlflowException, match="python_function"):
        mlflow.pyfunc.load_model(str(tmp_path))


def test_a_registered_model_of_a_plugin_pipeline_loads_with_the_plugins_loader(
    tmp_path: Path, plugin_loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = tmp_path / "model.ckpt"  # the plug-in's own checkpoint format, as its stage stored it
    stored.write_text(CHECKPOINT)
    artifact = TrackedArtifact("g00/model", stored.as_uri(), "d1" * 16, "checkpoint", "model", str(stored))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    location = (tmp_path / "mlartifacts").as_uri()
    tracker = MlflowTracker(uri, "toy", artifact_location=location, pyfunc_loader=plugin_loader)
    tracker.start_pipeline("run-toy", "toy", {"pipeline": "toy"}, resume=False)
    tracker.stage_finished(StageRecord("g00/train", 0, "fp-train", False, "FINISHED", outputs={"g00/model": artifact}))
    tracker.end_pipeline("FINISHED")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = mlflow.pyfunc.load_model("models:/toy@gen-00")
    assert model.metadata.flavors["python_function"]["loader_module"] == plugin_loader
    answer = model.predict(np.zeros((2, 1, 4, 4), np.uint8))
    assert answer.tolist() == [[len(CHECKPOINT)]] * 2, "the plug-in's own loader read its checkpoint"


def test_the_api_takes_the_input_shape_from_the_runs_spec() -> None:
    declared = spec(input_shape=lambda config: (3, config["side"], config["side"]))
    assert api_models.trained_input_shape("toy-1", declared, {"side": 12}) == (3, 12, 12)


def test_a_spec_without_an_input_shape_is_refused_by_input_shape_naming_what_it_lacks() -> None:
    with pytest.raises(InputError, match=r"run toy-1: its pipeline 'toy' does not declare .*PipelineSpec.input_shape"):
        api_models.trained_input_shape("toy-1", spec(), {})


def test_a_spec_without_a_loader_is_refused_by_model_and_predict_naming_what_it_lacks() -> None:
    assert api_models.declared_loader(spec(pyfunc_loader=PLUGIN_LOADER), "toy-1") == PLUGIN_LOADER
    with pytest.raises(InputError, match=r"declares no pyfunc loader \(PipelineSpec.pyfunc_loader\).*relay.artifact"):
        api_models.declared_loader(spec(), "toy-1")


def test_without_an_input_shape_predict_still_checks_the_dtype_and_leaves_the_shape_to_the_model() -> None:
    images = np.zeros((2, 3, 5, 7), np.uint8)
    assert api_models.checked_images(images, None, "toy-1") is images
    with pytest.raises(InputError, match="got dtype float32"):
        api_models.checked_images(images.astype(np.float32), None, "toy-1")


def track_model(tmp_path: Path, run_id: str, pipeline: str, loader: str | None, stored: Path) -> None:
    """One real tracker, as `relay run` of ``pipeline`` drives it, logging and registering g00/model from ``stored``."""
    artifact = TrackedArtifact("g00/model", stored.as_uri(), "d1" * 16, "checkpoint", "model", str(stored))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    location = (tmp_path / "mlartifacts").as_uri()  # one experiment: where a cache hit finds the model
    tracker = MlflowTracker(uri, "relay", artifact_location=location, pyfunc_loader=loader)
    tracker.start_pipeline(run_id, pipeline, {"pipeline": pipeline}, resume=False)
    tracker.stage_finished(StageRecord("g00/train", 0, "fp-train", False, "FINISHED", outputs={"g00/model": artifact}))
    tracker.end_pipeline("FINISHED")


def registered_loader(name: str) -> str | None:
    """The loader module the MLmodel of ``models:/NAME@gen-00`` names (None: no python_function flavour)."""
    flavors = Model.load(f"models:/{name}@gen-00").flavors
    return flavors.get("python_function", {}).get("loader_module")


def test_the_same_bytes_from_pipelines_with_other_loaders_are_registered_each_with_its_own_loader(
    tmp_path: Path, plugin_loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit reuses a logged model of the same bytes: only one its own pipeline's loader loads."""
    stored = tmp_path / "model.ckpt"
    stored.write_text(CHECKPOINT)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    track_model(tmp_path, "bare-1", "bare", None, stored)
    track_model(tmp_path, "own-1", "own", plugin_loader, stored)
    track_model(tmp_path, "own-2", "again", plugin_loader, stored)
    assert registered_loader("bare") is None
    assert registered_loader("own") == plugin_loader, "not the bare pipeline's MLmodel"
    assert mlflow.pyfunc.load_model("models:/own@gen-00").predict(np.zeros((1, 1, 4, 4), np.uint8)).tolist() == [
        [len(CHECKPOINT)]
    ]
    client = mlflow.MlflowClient()
    same = {client.get_model_version("own", "1").model_id, client.get_model_version("again", "1").model_id}
    assert len(same) == 1, "the same bytes and loader are still logged once"
