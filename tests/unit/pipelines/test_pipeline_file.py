"""Every pipeline file of this package is an orchestrator.config.PipelineConfig, written out in its old key order."""

from __future__ import annotations

import yaml

from orchestrator.config import PipelineConfig
from pipelines.registry import PIPELINES
from pipelines.schema import FILE_ORDER, PipelineFile


def test_every_bundled_config_model_derives_from_the_base_relay_reads() -> None:
    assert issubclass(PipelineFile, PipelineConfig)
    assert all(issubclass(spec.config_model, PipelineConfig) for spec in PIPELINES.values())


def test_a_saved_config_keeps_the_shared_sections_before_the_pipelines_own() -> None:
    for spec in PIPELINES.values():
        text = yaml.safe_dump(spec.config_model().model_dump(mode="json"), sort_keys=False)
        top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith(" ")]
        assert top[: len(FILE_ORDER)] == list(FILE_ORDER), spec.name
