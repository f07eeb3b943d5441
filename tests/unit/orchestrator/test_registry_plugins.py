"""A plug-in's pipelines, found through a real installed distribution's `relay.pipelines` entry points."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.registry import PipelineSpec, load_pipelines
from tests.unit.orchestrator.plugins import installed_plugin

PLUGIN = """
from orchestrator.config import PipelineConfig, StrictModel
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.registry import PipelineSpec


class ToySection(StrictModel):
    scale: float = 1.0


class ToyConfig(PipelineConfig):
    toy: ToySection = ToySection()


class BareConfig(StrictModel):
    pipeline: str
    name: str
    toy: ToySection = ToySection()


def make(ctx, inputs, params):
    return StageResult(outputs={"g00/value": None}, metrics={})


def build(config):
    return Pipeline(config.name, [Stage(name="g00/make", fn=make, inputs=(), outputs=("g00/value",), generation=0)])


SPEC = PipelineSpec(name="toy", config_model=ToyConfig, build=build)
BARE = PipelineSpec(name="toybare", config_model=BareConfig, build=build)
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `relay-toy` declaring `toy` (a PipelineConfig) and `toybare` (a model without run, ...)."""
    with installed_plugin(tmp_path / "site", "relay_toy", PLUGIN, {"toy": "SPEC", "toybare": "BARE"}):
        yield tmp_path


def write_config(folder: Path, pipeline: str) -> Path:
    path = folder / f"{pipeline}.yaml"
    path.write_text(textwrap.dedent(f"pipeline: {pipeline}\nname: {pipeline}\nrun:\n  workspace: {folder / 'ws'}\n"))
    return path


def test_a_plugin_pipeline_whose_model_lacks_relays_fields_is_refused_naming_plugin_and_fix(
    plugin: Path, capsys
) -> None:
    """`relay validate bare.yaml` ended in a traceback: AttributeError: 'BareConfig' object has no attribute 'run'."""
    bare = plugin / "bare.yaml"
    bare.write_text("pipeline: toybare\nname: bare\n")
    assert main(["validate", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("cannot run") == 1
    assert (
        "pipeline: 'toybare': the plug-in relay-toy 0.1 declares it (entry point toybare = relay_toy:BARE in group "
        "relay.pipelines), cannot run: its config model BareConfig lacks seed, run, tracking, tune, which Relay reads "
        "from every pipeline file; derive it from orchestrator.config.PipelineConfig" in err
    )


def test_the_plugins_other_pipeline_and_relays_own_still_load(plugin: Path, capsys) -> None:
    pipelines = load_pipelines()
    assert "toy" in pipelines and "toybare" not in pipelines and "crest" in pipelines
    assert main(["validate", str(write_config(plugin, "toy"))]) == 0
    assert "valid `toy` pipeline with 1 stages" in capsys.readouterr().out


def test_a_callers_own_mapping_is_checked_when_its_pipeline_is_chosen(tmp_path: Path, capsys) -> None:
    """Tests and embedders pass specs without entry points: the same check, then, with no plug-in to name."""
    from pydantic import BaseModel

    class Bare(BaseModel):
        pipeline: str
        name: str

    spec = PipelineSpec(name="bare", config_model=Bare, build=lambda config: None)
    config = tmp_path / "bare.yaml"
    config.write_text("pipeline: bare\nname: bare\n")
    assert main(["validate", str(config)], pipelines={"bare": spec}) == 2
    err = capsys.readouterr().err
    assert "pipeline: 'bare' cannot run: its config model Bare lacks seed, run, tracking, tune, which Relay" in err


def test_the_fields_a_config_model_must_have_are_pipeline_configs() -> None:
    """The registry names the fields (it may not import the config layer); PipelineConfig declares them."""
    from orchestrator.config import PipelineConfig
    from orchestrator.registry import CONFIG_BASE, CONFIG_FIELDS, config_model_problem

    assert tuple(PipelineConfig.model_fields) == CONFIG_FIELDS
    assert f"{PipelineConfig.__module__}.{PipelineConfig.__name__}" == CONFIG_BASE
    assert config_model_problem(PipelineConfig) is None
    assert "is not a pydantic model" in config_model_problem(dict)
