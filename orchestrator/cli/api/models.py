"""A generation's model from Python: the network, its input shape, and predictions for uint8 images.

Loaded as MLflow loads the registered ``gen-NN`` (``pyfunc_model``), with the loader the run's pipeline
declares; apart from the readers because images are checked against what the run trained on before any
model is loaded (``checked_images``).
"""

from __future__ import annotations

import reprlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli.api.calls import PathLike, checked_generation, mlflow_quieted
from orchestrator.cli.api.reading import run_record, stored_output
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import InputError, RelayError
from orchestrator.tracking.lineage import MODEL, write_mlmodel
from orchestrator.tracking.run_tree import is_generation_stage

if TYPE_CHECKING:
    import numpy as np
    import torch


@mlflow_quieted()
def model(
    run_id: str, generation: int, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> torch.nn.Module:
    """Generation ``generation``'s trained network, on CPU in eval mode: what MLflow registers as ``gen-NN``.

    Its input is NOT raw pixels: float32 ``[N, C, H, W]`` (channels first), each pixel ``(x/255 - 0.5)/0.5``
    (``pipelines.models.to_float``: uint8 0..255 -> [-1, 1]), at ``input_shape(run_id)``'s channels and
    size, the size the run trained at. Given anything else it fails (uint8) or answers wrongly without
    a word (``x/255``, another size). It returns logits; ``predict`` gives probabilities from uint8
    images, checked and scaled as in training, and is what to use unless the network itself is needed.

    Loaded from the stored checkpoint by ``mlflow.pyfunc.load_model(...).get_raw_model()``, as MLflow
    loads the registered ``gen-NN`` (``pyfunc_model``), with the loader the run's pipeline declares: a run
    whose pipeline declares none (``PipelineSpec.pyfunc_loader``) is refused (InputError).
    """
    generation = checked_generation(generation)
    store, spec, config = run_record(run_id, workspace, artifact_uri)
    return pyfunc_model(store, run_id, spec, config, generation).get_raw_model()


@mlflow_quieted()
def predict(
    run_id: str,
    generation: int,
    images: np.ndarray | torch.Tensor,
    workspace: PathLike | None = None,
    *,
    artifact_uri: str | None = None,
) -> np.ndarray:
    """Class probabilities, float32 ``[N, classes]``, of generation ``generation``'s model for uint8 ``images``.

    ``images``: uint8 pixels 0..255, ``[N, C, H, W]`` (or ``[N, H, W]`` for one channel) at the channels
    and size of ``input_shape(run_id)``, as the run's dataset holds them; a numpy array or a torch
    tensor. They are scaled as in training (``pipelines.models.to_float``) by the model's own pyfunc
    ``predict``, so the result is what ``mlflow.pyfunc.load_model("models:/NAME@gen-NN").predict`` gives.
    Why checked here: a network with a global pool takes any size and answers wrongly at the wrong
    one, so another dtype or size is bad input (InputError naming what the run expects), not a guess.
    A run whose pipeline declares no input shape (``PipelineSpec.input_shape``) has the dtype checked
    here and the shape by its model's signature and loader; one that declares no loader is refused.
    """
    generation = checked_generation(generation)
    store, spec, config = run_record(run_id, workspace, artifact_uri)
    loader = declared_loader(spec, run_id)
    expected = trained_input_shape(run_id, spec, config) if spec.input_shape is not None else None
    batch = checked_images(images, expected, run_id)
    return pyfunc_model(store, run_id, spec, config, generation, loader).predict(batch)


@mlflow_quieted()
def input_shape(
    run_id: str, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images the run trained on, which ``predict`` and ``model`` must be given.

    What the run's pipeline says (``PipelineSpec.input_shape``); for Relay's pipelines the run's
    ``data.image_size`` when its config set it, else its dataset's own size (digits 16, CIFAR 32, an
    image folder 32), else the size a sharded dataset was imported at. A pipeline that does not say
    is refused (InputError).
    """
    _, spec, config = run_record(run_id, workspace, artifact_uri)
    return trained_input_shape(run_id, spec, config)


def trained_input_shape(run_id: str, spec: Any, config: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` the run's pipeline gives for its config (``spec.input_shape``); InputError if it says none."""
    if spec.input_shape is None:
        raise InputError(
            f"run {run_id}: its pipeline {spec.name!r} does not declare the images its models take "
            "(PipelineSpec.input_shape); read them from the signature of its logged model's MLmodel file"
        )
    try:
        return spec.input_shape(config)
    except ValueError as exc:  # data it cannot read: a sharded dataset whose manifest is gone
        raise RelayError(f"cannot tell the image size run {run_id} trained at: {exc}") from exc


def declared_loader(spec: Any, run_id: str) -> str:
    """The module the run's pipeline loads its models with (``spec.pyfunc_loader``); InputError if it declares none.

    Why refused rather than loaded with Relay's loader: another pipeline's checkpoints are not Relay's.
    """
    if spec.pyfunc_loader is None:
        raise InputError(
            f"run {run_id}: its pipeline {spec.name!r} declares no pyfunc loader (PipelineSpec.pyfunc_loader), "
            "so its models cannot be loaded as MLflow models; load the checkpoint itself with "
            f"relay.artifact({run_id!r}, NAME)"
        )
    return spec.pyfunc_loader


def checked_images(images: Any, expected: tuple[int, int, int] | None, run_id: str) -> np.ndarray:
    """``images`` as a uint8 ``[N, C, H, W]`` array when they have the run's shape; else InputError saying which.

    ``expected`` None (a pipeline that does not declare its input shape): the type and dtype are
    checked, the shape is left to the model's signature.
    """
    import numpy as np

    if not (isinstance(images, np.ndarray) or hasattr(images, "detach")):
        raise InputError(
            f"images: expected a numpy array or torch tensor of uint8 pixels [N, C, H, W], got "
            f"{type(images).__name__} {reprlib.repr(images)}; e.g. np.asarray(pixels, dtype=np.uint8)"
        )
    batch = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if expected is None:
        return checked_pixels(batch, "uint8 images [N, C, H, W]", run_id)
    channels, height, width = expected
    wanted = f"uint8 images [N, {channels}, {height}, {width}]" + (
        f" or [N, {height}, {width}]" if channels == 1 else ""
    )
    batch = checked_pixels(batch, wanted, run_id)
    if batch.ndim == 3 and channels == 1:
        batch = batch[:, None]
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        raise InputError(
            f"images: run {run_id} trained on {wanted} ({height}x{width}, {channels} channel(s)), got "
            f"{list(batch.shape)}; {_shape_fix(batch.shape, expected)}"
        )
    if batch.shape[0] == 0:  # the model's pyfunc predict raised a bare ValueError on it
        raise InputError(
            f"images: no images (got an empty batch {list(batch.shape)}); pass at least one {height}x{width} image"
        )
    return batch


def checked_pixels(batch: np.ndarray, wanted: str, run_id: str) -> np.ndarray:
    """``batch`` when it holds uint8 pixels; else InputError saying how to pass them (``wanted``: what the run takes)."""
    import numpy as np

    if batch.dtype != np.uint8:
        fix = (
            "pass the pixels as read, not scaled: predict scales them as training did"
            if np.issubdtype(batch.dtype, np.floating)
            else "convert pixels 0..255 with .astype(np.uint8)"
        )
        raise InputError(
            f"images: run {run_id}'s models take {wanted} with pixels 0..255, got dtype {batch.dtype}; {fix}"
        )
    return batch


def _shape_fix(shape: tuple[int, ...], expected: tuple[int, int, int]) -> str:
    """What to do about images of another shape: the fix differs for a flat table, channels and size."""
    channels, height, width = expected
    if tuple(shape) in ((height, width), expected):
        return "one image needs a batch axis: pass images[None]"
    if len(shape) == 4 and shape[-1] == channels and tuple(shape[1:3]) == (height, width):
        return "move the channels first (images.transpose(0, 3, 1, 2))"
    if len(shape) == 4 and tuple(shape[2:]) == (height, width):
        return f"give each image {channels} channel(s), as the run's dataset has"
    if len(shape) == 2 and shape[1] == channels * height * width:
        return f"reshape the rows to images (batch.reshape(-1, {channels}, {height}, {width}))"
    return f"resize them to {height}x{width} (channels first) before predicting"


def pyfunc_model(
    store: ArtifactStore, run_id: str, spec: Any, config: Any, generation: int, loader: str | None = None
) -> Any:
    """The generation's model as ``mlflow.pyfunc.load_model`` loads the registered ``gen-NN``: a PyFuncModel.

    The stored checkpoint goes to a temporary folder beside the MLmodel file the tracker logs with it
    (``write_mlmodel``: the same signature, and the loader of the run's pipeline, ``loader`` or else
    ``declared_loader``), so ``predict`` and ``get_raw_model`` are MLflow's public ones; the loaded
    model holds the network, not the files.
    """
    import mlflow.pyfunc

    loader = loader or declared_loader(spec, run_id)
    dag = spec.build(config)
    ref = stored_output(store, run_id, dag, generation_model(dag, run_id, generation))
    with tempfile.TemporaryDirectory(prefix="relay-model-") as folder:
        (Path(folder) / "checkpoint.pt").write_bytes(store.read_bytes(ref.path))
        write_mlmodel(Path(folder), dict(ref.meta), configured_image_size(config), loader)
        return mlflow.pyfunc.load_model(folder)


def configured_image_size(config: Any) -> int | None:
    """The config's ``data.image_size`` (the signature's size when the checkpoint records none), None without one.

    Read with getattr, as the tracker reads it: a plug-in's config need not have a ``data`` section.
    """
    return getattr(getattr(config, "data", None), "image_size", None)


def generation_model(dag: Pipeline, run_id: str, generation: int) -> str:
    """The artifact name of the generation's own model (``g01/model``), not a side branch's (``kd/model``)."""
    found = [
        output
        for stage in dag.stages
        if is_generation_stage(stage.name, generation)
        for output, kind in stage.lineage.items()
        if kind == MODEL
    ]
    if len(found) == 1:
        return found[0]
    having = sorted({s.generation for s in dag.stages if s.generation is not None and MODEL in s.lineage.values()})
    raise InputError(
        f"run {run_id} has {len(found) or 'no'} models of generation {generation}{': ' * bool(found)}"
        f"{', '.join(found)}; generations with a model: {', '.join(map(str, having)) or 'none'}"
    )
