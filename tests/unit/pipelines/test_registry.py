"""Every registered pipeline, timm-style: the tests iterate the registry, never a hand-kept list.

A new pipeline (one builder module with its SPEC, one YAML, one line in pipelines/registry.py)
is checked here without editing this file.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_yaml, validate_config
from orchestrator.tracking.run_tree import parent_keys
from pipelines.registry import DATA, PIPELINES, PYFUNC_LOADER, models_input_shape

CONFIGS = Path(__file__).resolve().parents[3] / "pipelines" / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_registry_entries_point_at_the_builders(name: str) -> None:
    spec = PIPELINES[name]
    builder = sys.modules[spec.build.__module__]
    assert builder.__name__.startswith("pipelines.builders.") and spec.name == name
    added = {"data": DATA, "pyfunc_loader": PYFUNC_LOADER, "input_shape": models_input_shape}
    assert dataclasses.replace(builder.SPEC, **added) == spec, "the registry adds only the datasets and the loader"
    assert spec.config_model.__module__ == builder.__name__ and spec.preflight.__module__.startswith(
        "pipelines.builders."
    )
    assert spec.summary["balanced_accuracy"] == "evaluate/balanced_accuracy"
    assert spec.build(spec.config_model()).stages


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_default_config_validates_and_builds(name: str) -> None:
    spec = PIPELINES[name]
    config = validate_config(spec.config_model, {}, source="defaults")
    assert config.pipeline == name
    pipeline = spec.build(config)
    assert pipeline.stages and pipeline.stages[0].name == "data/split"


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_summary_column_reads_a_stage_role_of_the_dag(name: str) -> None:
    """`relay generations` shows `<role>/<metric>`; a column naming a role the DAG lacks would stay empty.

    The tracker names a generation's stage's metrics by the last segment of the stage name
    (`g03/evaluate` -> `evaluate`) and a probe outside the generations by its whole name
    (`pretext/probe`, there when `pretext.method` is set): ``parent_keys``.
    """
    spec = PIPELINES[name]
    with_pretext = validate_config(spec.config_model, {"pretext": {"method": "rotnet"}}, source="test")
    stages = [*spec.build(spec.config_model()).stages, *spec.build(with_pretext).stages]
    placed = (parent_keys(stage.name, stage.generation) for stage in stages)
    prefixes = {keys[1] for keys in placed if keys is not None}
    for header, metric in spec.summary.items():
        assert any(metric.startswith(f"{prefix}/") for prefix in prefixes), (
            f"{name}: column {header!r} reads {metric!r}, but the DAG's metrics are under {sorted(prefixes)}"
        )


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_pipeline_with_a_pretext_probe_shows_its_score(name: str) -> None:
    """Only CReST's table showed the probe of the pretext encoder; every pipeline that takes pretext.method did not."""
    spec = PIPELINES[name]
    with_pretext = validate_config(spec.config_model, {"pretext": {"method": "rotnet"}}, source="test")
    probes = [stage for stage in spec.build(with_pretext).stages if stage.name == "pretext/probe"]
    if probes:
        assert "pretext/probe/balanced_accuracy" in spec.summary.values(), f"{name}: no column for its pretext probe"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate_and_build(path: Path) -> None:
    data = load_yaml(path)
    assert path.read_text().splitlines()[0].startswith(f"# relay run pipelines/configs/{path.name}")
    assert data.get("pipeline") in PIPELINES, f"{path.name}: `pipeline:` names none of {sorted(PIPELINES)}"
    cfg = validate_config(PIPELINES[data["pipeline"]].config_model, data, source=str(path))
    assert PIPELINES[data["pipeline"]].build(cfg).stages


def test_every_registered_pipeline_ships_a_config() -> None:
    named = {load_yaml(path).get("pipeline") for path in SHIPPED}
    assert set(PIPELINES) <= named
