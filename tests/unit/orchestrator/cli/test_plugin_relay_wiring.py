"""A plug-in's spec written as the checklist says (no `data`, `pyfunc_loader`, `input_shape`) gets Relay's wiring.

QA's case: a researcher's `relay.pipelines` plug-in whose config reads Relay's data section, run on a
dataset deleted and imported again at the same `data.uri` with other images, was served entirely from
cache (`0 executed, 7 cached`, the old data's scores): nothing pinned the data by content, since Relay's
own specs get their `DataSpec` where they are registered and a plug-in's had none; its registered models
could not be loaded either (no pyfunc loader). And `relay validate` of a file naming a plug-in that is not
installed read like a typo. The plug-in here is a real installed distribution, found through its entry
point as `relay` finds every plug-in; the datasets are real `relay data import`s.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.common import pipelines_of
from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.registry import load_pipelines
from pipelines.registry import DATA, PYFUNC_LOADER, models_input_shape
from tests.unit.orchestrator.plugins import installed_plugin

PLUGIN = """
from typing import Literal

from orchestrator.dag import Pipeline
from orchestrator.registry import PipelineSpec
from pipelines.builders.common import split_stage
from pipelines.schema import PipelineFile


class SelftrainConfig(PipelineFile):
    pipeline: Literal["selftrain"] = "selftrain"
    name: str = "selftrain"


def build(config):
    return Pipeline(config.name, [split_stage(config)])


SPEC = PipelineSpec(name="selftrain", config_model=SelftrainConfig, build=build)
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `relay-selftrain` declaring `selftrain`, whose spec sets none of Relay's wiring."""
    with installed_plugin(tmp_path / "site", "relay_selftrain", PLUGIN, {"selftrain": "SPEC"}):
        yield tmp_path


def config_file(folder: Path, dataset: Path) -> Path:
    path = folder / "selftrain.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            pipeline: selftrain
            name: mine
            data:
              name: parquet
              uri: {dataset}
            run:
              workspace: {folder / "ws"}
            """
        )
    )
    return path


def split_fingerprint(path: Path) -> tuple[str, object]:
    """The fingerprint of the file's `data/split` stage, as `relay run` keys its cache, and the checked config."""
    spec, config, _ = load_pipeline_file(str(path), [])
    (split,) = spec.build(config).stages
    return fingerprint(split, {}, "code"), config


def test_the_plugins_spec_gets_relays_data_loader_and_input_shape(plugin: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="relay"):
        spec = pipelines_of(argparse.Namespace(pipelines=None))["selftrain"]
        pipelines_of(argparse.Namespace(pipelines=None))
    said = [
        r for r in caplog.records if r.name.split(".")[0] in {"relay", "orchestrator", "pipelines"}
    ]  # not asyncio leftovers of another test
    assert not said, "loading the pipelines says nothing: every command loads them"
    config = plugin / "selftrain.yaml"
    config.write_text(f"pipeline: selftrain\nname: mine\nrun:\n  workspace: {plugin / 'ws'}\n")
    with caplog.at_level(logging.INFO, logger="relay"):
        for _ in range(2):  # the line is said where a file of the pipeline is checked, once
            load_pipeline_file(str(config), [])
    (said,) = [record.getMessage() for record in caplog.records if "'selftrain'" in record.getMessage()]
    assert "reads the data section pipelines.schema.DataSection" in said and PYFUNC_LOADER in said
    assert spec.data is DATA
    assert spec.pyfunc_loader == PYFUNC_LOADER
    assert spec.input_shape is models_input_shape
    assert load_pipelines()["selftrain"].data is None, "the entry point's own spec is left as declared"


def test_a_dataset_imported_again_at_the_same_uri_is_not_the_old_ones_cache(plugin: Path, capsys) -> None:
    dataset = plugin / "dataset"
    config = config_file(plugin, dataset)
    assert main(["data", "import", "digits", str(dataset)]) == 0
    assert main(["validate", str(config)]) == 0
    first, first_config = split_fingerprint(config)
    shutil.rmtree(dataset)
    assert main(["data", "import", "synthetic", str(dataset)]) == 0  # other images, the same data.uri
    assert main(["validate", str(config)]) == 0
    second, second_config = split_fingerprint(config)
    assert first_config.data.uri == second_config.data.uri == str(dataset)
    assert (
        first_config.data.digest and second_config.data.digest and first_config.data.digest != second_config.data.digest
    )
    assert second_config.augment.weak.flip is not None, "the dataset's flip default is pinned as what ran"
    assert first != second, "the second dataset met the first one's cached split"


def test_a_plugin_not_installed_here_is_named_as_one_not_only_as_a_typo(tmp_path: Path, capsys) -> None:
    path = tmp_path / "selftrain.yaml"
    path.write_text(f"pipeline: selftrain\nname: mine\nrun:\n  workspace: {tmp_path / 'ws'}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "pipeline: expected one of crest, " in err and "got 'selftrain'; set `pipeline:` at the top of the file" in err
    )
    assert "a plug-in's pipeline is among them only where its package is installed" in err
    assert "entry point group relay.pipelines" in err and "PYTHONPATH" in err
