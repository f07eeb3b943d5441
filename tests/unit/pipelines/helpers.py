"""Helpers the pipelines' unit tests share: a validated config from dotted overrides, its error text, a stage context."""

from __future__ import annotations

import pytest

from orchestrator.config import apply_overrides, validate_config
from orchestrator.dag import StageContext
from orchestrator.errors import ConfigError


def config(model_cls: type, **overrides: object) -> object:
    return validate_config(model_cls, apply_overrides({}, dict(overrides.items())), source="test")


def problems(model_cls: type, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        config(model_cls, **overrides)
    return str(info.value)


def ctx(stage: str = "s", seed: int = 0) -> StageContext:
    return StageContext(run_id="r", stage=stage, generation=0, seed=seed, device="cpu", attempt=0)
