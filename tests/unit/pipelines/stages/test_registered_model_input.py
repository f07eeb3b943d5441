"""What the registered pyfunc model takes: images at the size it trained at, in any numpy memory layout.

One tiny real network, stored by the real artifact store (whose manifest carries the checkpoint's
plain values to the tracker), logged and registered by the real tracker in a SQLite MLflow store,
and loaded back as users load it: ``mlflow.pyfunc.load_model("models:/NAME@gen-00")``. The run's
config leaves ``data.image_size`` unset, as every shipped config but one does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from orchestrator.dag import StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from pipelines.models import create_model
from pipelines.registry import PYFUNC_LOADER
from pipelines.stages.common import model_checkpoint
from pipelines.stages.mlflow_model import _load_pyfunc

TRAINED_AT = (16, 16)
PIPELINE = "tiny"


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrackedArtifact, str]:
    """The stored checkpoint as the runner hands it to the tracker, and the MLflow store it was registered in."""
    root = tmp_path_factory.mktemp("registered")
    torch.manual_seed(0)
    checkpoint = model_checkpoint(create_model("small_cnn", 10, 1), "small_cnn", 10, 1, 0.0, TRAINED_AT)
    store = ArtifactStore(str(root / "artifacts"))
    ref = store.write_stage("fp-train", "g00/train", StageResult(outputs={"g00/model": checkpoint})).outputs[
        "g00/model"
    ]
    artifact = TrackedArtifact(
        "g00/model", store.location(ref.path), ref.digest, ref.kind, "model", str(store.local_path(ref.path)), ref.meta
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    location = (root / "mlartifacts").as_uri()
    tracker = MlflowTracker(uri, "registered", artifact_location=location, pyfunc_loader=PYFUNC_LOADER)
    tracker.start_pipeline("run-tiny", PIPELINE, {"data": {"name": "digits"}}, resume=False)
    tracker.stage_finished(StageRecord("g00/train", 0, "fp-train", False, "FINISHED", outputs={"g00/model": artifact}))
    tracker.end_pipeline("FINISHED")
    return artifact, uri


@pytest.fixture
def registered(stored: tuple[TrackedArtifact, str], monkeypatch: pytest.MonkeyPatch) -> mlflow.pyfunc.PyFuncModel:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stored[1])
    return mlflow.pyfunc.load_model(f"models:/{PIPELINE}@gen-00")


def digits(count: int) -> np.ndarray:
    """Distinct uint8 images [N, 1, 16, 16], so a layout mix-up changes the probabilities."""
    return np.random.default_rng(0).integers(0, 256, (count, 1, *TRAINED_AT), dtype=np.uint8)


def test_the_signature_has_the_height_and_width_the_model_trained_at(registered) -> None:
    (spec,) = registered.metadata.signature.inputs.inputs
    assert spec.type == np.dtype(np.uint8) and spec.shape == (-1, 1, *TRAINED_AT)
    assert registered.predict(digits(2)).shape == (2, 10)


@pytest.mark.parametrize("side", [32, 8])
def test_another_size_is_refused_not_answered(registered, side: int) -> None:
    with pytest.raises(MlflowException, match=r"Shape of input \(2, 1, \d+, \d+\) does not match expected shape"):
        registered.predict(np.zeros((2, 1, side, side), np.uint8))


def test_the_loader_itself_refuses_another_size_and_a_missing_channel_axis_saying_what_to_do(stored) -> None:
    """What pyfunc's loader builds checks the size too: a model whose signature leaves it open still refuses."""
    classifier = _load_pyfunc(stored[0].local_path)
    with pytest.raises(ValueError) as refused:
        classifier.predict(np.zeros((2, 1, 32, 32), np.uint8))
    assert str(refused.value) == (
        "this model was trained on 16x16 images [N, C, 16, 16], got [2, 1, 32, 32]; "
        "resize them to 16x16 (channels first) before predicting"
    )
    with pytest.raises(ValueError, match=r"got shape \[2, 16, 16\]; add the channel axis \(images\[:, None\]"):
        classifier.predict(np.zeros((2, *TRAINED_AT), np.uint8))


@pytest.mark.parametrize(
    "view",
    [
        lambda x: x[..., ::-1],  # mirrored
        lambda x: np.flip(x, axis=1),  # the channel axis, of length 1: numpy still calls it contiguous
        lambda x: x[:, ::-1],  # BGR -> RGB as written for a colour image
        lambda x: x[::-1],  # the batch reversed
    ],
)
def test_negative_stride_views_give_what_their_copies_give(registered, view) -> None:
    images = view(digits(4))
    assert min(images.strides) < 0
    assert np.array_equal(registered.predict(images), registered.predict(np.ascontiguousarray(images)))


def test_a_read_only_view_predicts_without_torchs_not_writable_warning(registered, stored) -> None:
    """torch says it once a process, so the array torch is handed is checked too: writable, strides >= 0."""
    images = np.broadcast_to(digits(1), (3, 1, *TRAINED_AT))
    frozen = digits(3)
    frozen.setflags(write=False)  # contiguous, yet read-only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registered.predict(images).shape == (3, 10)
        assert np.array_equal(registered.predict(frozen), registered.predict(frozen.copy()))
    classifier = _load_pyfunc(stored[0].local_path)
    for handed in (classifier.checked_images(images), classifier.checked_images(frozen)):
        assert handed.flags.writeable and handed.flags.c_contiguous and min(handed.strides) >= 0


def test_a_checkpoint_that_records_no_size_keeps_the_signature_open(tmp_path: Path) -> None:
    """Checkpoints stored before the size was recorded (or imported weights) still load, unchecked, as before."""
    from orchestrator.tracking.lineage import write_mlmodel

    checkpoint = model_checkpoint(create_model("small_cnn", 10, 1), "small_cnn", 10, 1, 0.0)
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    write_mlmodel(tmp_path, {k: v for k, v in checkpoint.items() if k != "state_dict"}, None, PYFUNC_LOADER)
    model = mlflow.pyfunc.load_model(str(tmp_path))
    assert model.metadata.signature.inputs.inputs[0].shape == (-1, 1, -1, -1)
    assert model.predict(np.zeros((2, 1, 20, 20), np.uint8)).shape == (2, 10)


@pytest.mark.parametrize(("size", "expected"), [({}, (16, 16)), ({"data.image_size": 12}, (12, 12))])
def test_a_train_stage_records_the_size_it_trained_at_in_its_checkpoint(size, expected) -> None:
    """The size comes from the images the stage read: the dataset's own (synthetic 16) unless data.image_size set one."""
    from pipelines.builders import distill
    from pipelines.stages import train_network
    from tests.unit.pipelines.helpers import config, ctx
    from tests.unit.pipelines.stages.test_train_network import TINY, _split

    cfg = config(distill.DistillConfig, **TINY, **size)
    stage = next(s for s in distill.build(cfg).stages if s.name == "baseline/train")
    result = train_network.train_network(ctx(stage.name), {"data/split": _split(cfg.data)}, stage.params)
    (checkpoint,) = result.outputs.values()
    assert (checkpoint["image_height"], checkpoint["image_width"]) == expected
