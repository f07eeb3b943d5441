"""The pipelines a config file can name with `pipeline: NAME`: a plain dict, so grep finds what runs.

Each builder module defines its own `SPEC` (config model, build, preflight, summary columns); a
new pipeline is one builder module, one YAML in pipelines/configs and one entry in the tuple
below, plus the docs of docs/ARCHITECTURE.md's checklist (Adding a pipeline). The `relay.pipelines`
entry point (pyproject.toml) names `PIPELINES`, and the unit tests iterate it (and build each
pipeline to read its stage roles), so a new entry is tested without touching any test. Every
pipeline reads the datasets of `pipelines.datasets` (`relay data import` and `data.name: parquet`),
so each carries `DATA`; every one stores its models as `pipelines.stages.common` checkpoints, so each
names `PYFUNC_LOADER` as their MLflow loader and `models_input_shape` as the images they take. A
plug-in's spec that sets no `data` and whose config's `data` is a `DataSection` (or a subclass) is
given the same three where `relay` loads the entry points (`installed_pipelines` of the CLI), a
`pyfunc_loader` or `input_shape` it sets kept.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from orchestrator.registry import DataSpec, PipelineSpec
from pipelines.builders import (
    crest,
    distill,
    domain_similarity,
    fitnets,
    knowledge_evolution,
    lwf,
    noisy_student,
    transfer,
)
from pipelines.class_names import classes_by_number
from pipelines.data import DATASET_REQUIRES_ROOT, image_shape, root_digest
from pipelines.datasets import imports
from pipelines.datasets.catalog import SHARDED, flips
from pipelines.datasets.shards import read_manifest


def dataset_pins(config: Any) -> dict[str, Any]:
    """What the config leaves to the dataset, pinned: `data.digest` and the absolute `data.uri` of a sharded
    dataset (named by `data.uri` alone or by a prefix), `data.root_digest` and the absolute `data.root` of a
    dataset read from a folder, and a null `augment.weak.flip`.

    Why: stages are cached by their params, and `data` names shards by URI and folders by path; a
    dataset deleted and imported again at the same URI, or images replaced or removed in the folder,
    would otherwise meet the old data's cached split and models. The flip is the dataset's default
    written in, so config.yaml and MLflow's params say what ran.
    """
    data = getattr(config, "data", None)
    pins: dict[str, Any] = {}
    if getattr(data, "name", None) == SHARDED and data.uri:
        pins["data.uri"] = data.uri  # a local path made absolute (DatasetURI), as data.root is
        digest = read_manifest(data.uri).digest
        if data.digest != digest:  # a prefix pin becomes the whole digest
            pins["data.digest"] = digest
    if getattr(data, "name", None) in DATASET_REQUIRES_ROOT and data.root:
        pins["data.root"] = data.root  # absolute (FolderPath): a Tune trial, which chdirs, reads the same folder
        digest = root_digest(data.name, data.root)
        if data.root_digest != digest:  # Relay's field: a stale or hand-set value is replaced
            pins["data.root_digest"] = digest
    augment = getattr(config, "augment", None)
    if data is not None and augment is not None and augment.weak.flip is None:
        pins["augment.weak.flip"] = flips(augment, data)
    return pins


def data_elsewhere(config: Any) -> str | None:
    """``data.root PATH`` (or a local ``data.uri PATH``) when that folder is not on this machine, else None.

    Why: `relay submit` of a config whose data lives on the cluster's disks (`data.root: /mnt/relay/...`)
    was refused from a laptop that lacks the folder, with no way around it.
    """
    data = getattr(config, "data", None)
    if getattr(data, "name", None) in DATASET_REQUIRES_ROOT and data.root and not os.path.exists(data.root):
        return f"data.root {data.root}"
    if getattr(data, "name", None) == SHARDED and data.uri and "://" not in data.uri and not os.path.exists(data.uri):
        return f"data.uri {data.uri}"
    return None


DATA = DataSpec(
    sources={name: source.description for name, source in imports.SOURCES.items()},
    claims=imports.claims,
    import_dataset=imports.import_dataset,
    describe=imports.describe,
    pins=dataset_pins,
    elsewhere=data_elsewhere,
    by_number=classes_by_number,
)

# MLflow's python_function loader of Relay's checkpoints, named (not imported: it imports torch, and the
# driver never does). Every model Relay has logged names it in its MLmodel file: renaming the module
# leaves those models unloadable.
PYFUNC_LOADER = "pipelines.stages.mlflow_model"


def trained_input_shape(data: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images a run with data section ``data`` trained on: what its models must be given.

    ``data.image_size`` when set, else the dataset's own size (digits 16, CIFAR 32), else the size a
    sharded dataset was imported at (its manifest; ValueError when it cannot be read). Why asked: a
    network with a global pool accepts any size and answers wrongly at the wrong one, so callers
    check the size before predicting.
    """
    shape = image_shape(data.name, data.image_size)
    if shape is None:
        shape = read_manifest(data.uri).image_shape
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def models_input_shape(config: Any) -> tuple[int, int, int]:
    """``PipelineSpec.input_shape`` of Relay's pipelines: the shape their data section gives."""
    return trained_input_shape(config.data)


PIPELINES: dict[str, PipelineSpec] = {
    spec.name: dataclasses.replace(spec, data=DATA, pyfunc_loader=PYFUNC_LOADER, input_shape=models_input_shape)
    for spec in (
        crest.SPEC,
        knowledge_evolution.SPEC,
        noisy_student.SPEC,
        distill.SPEC,
        transfer.SPEC,
        lwf.SPEC,
        fitnets.SPEC,
        domain_similarity.SPEC,
    )
}
