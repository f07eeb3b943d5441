"""The pipelines a config file can name with `pipeline: NAME`: a plain dict, so grep finds what runs.

Each builder module defines its own `SPEC` (config model, build, preflight, summary columns); a
new pipeline is one builder module, one YAML in pipelines/configs and one entry in the tuple
below. The `relay.pipelines` entry point (pyproject.toml) names `PIPELINES`, and the unit tests
iterate it, so a new entry is tested without touching any test. Every pipeline reads the datasets
of `pipelines.datasets` (`relay data import` and `data.name: parquet`), so each carries `DATA`.
"""

from __future__ import annotations

import dataclasses
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
from pipelines.datasets import imports
from pipelines.datasets.catalog import SHARDED
from pipelines.datasets.shards import read_manifest


def dataset_pins(config: Any) -> dict[str, dict[str, str]]:
    """`data.digest` from the manifest, for a sharded dataset named by `data.uri` alone or by a prefix.

    Why: stages are cached by their params, and `data` names shards by URI; a dataset deleted and
    imported again at the same URI would otherwise meet the old one's cached split and models.
    """
    data = getattr(config, "data", None)
    if getattr(data, "name", None) != SHARDED or not data.uri:
        return {}
    digest = read_manifest(data.uri).digest
    return {} if data.digest == digest else {"data": {"digest": digest}}  # a prefix pin becomes the whole digest


DATA = DataSpec(
    sources={name: source.description for name, source in imports.SOURCES.items()},
    claims=imports.claims,
    import_dataset=imports.import_dataset,
    describe=imports.describe,
    pins=dataset_pins,
)

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: dataclasses.replace(spec, data=DATA)
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
