"""The pipelines a config file can name with `pipeline: NAME`: a plain dict, so grep finds what runs.

Each builder module defines its own `SPEC` (config model, build, preflight, summary columns); a
new pipeline is one builder module, one YAML in pipelines/configs and one entry in the tuple
below. The `relay.pipelines` entry point (pyproject.toml) names `PIPELINES`, and the unit tests
iterate it, so a new entry is tested without touching any test.
"""

from __future__ import annotations

from orchestrator.registry import PipelineSpec
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

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec
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
