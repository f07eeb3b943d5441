"""A searched key read only by a stage the trials leave out is warned of as inert.

QA's case: a plug-in's stage after each generation's evaluation (`gNN/filter`) reads `selftrain.min_confidence`.
Trials run the stages their metric needs (``left_out_stages``), so the filter never runs in a trial and every
value of the key gave the same trial; the inert-key check counted the whole pipeline's work, saw the filter's
fingerprint change and said nothing, and best.yaml named a "best" value that meant nothing. The plug-in here
is a real installed distribution, found through its entry point as `relay` finds one.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.plugins import installed_plugin

PLUGIN = """
import pyarrow as pa

from orchestrator.config import PipelineConfig, StrictModel
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.registry import PipelineSpec


class SelftrainSection(StrictModel):
    generations: int = 2
    min_confidence: float = 0.5
    lr: float = 0.1


class SelftrainConfig(PipelineConfig):
    selftrain: SelftrainSection = SelftrainSection()


def evaluate(ctx, inputs, params):
    return StageResult(outputs={f"g{params['generation']:02d}/scores": pa.table({"s": [1]})}, metrics={"accuracy": 0.5})


def keep_confident(ctx, inputs, params):
    return StageResult(outputs={f"g{params['generation']:02d}/kept": pa.table({"s": [1]})}, metrics={"kept": 1.0})


def build(config):
    stages = []
    for g in range(config.selftrain.generations):
        scores, kept = f"g{g:02d}/scores", f"g{g:02d}/kept"
        evaluated = {"generation": g, "lr": config.selftrain.lr}
        filtered = {"generation": g, "min_confidence": config.selftrain.min_confidence}
        stages.append(Stage(f"g{g:02d}/evaluate", evaluate, (), (scores,), params=evaluated, generation=g))
        stages.append(Stage(f"g{g:02d}/filter", keep_confident, (scores,), (kept,), params=filtered, generation=g))
    return Pipeline(config.name, stages)


SPEC = PipelineSpec(name="selftrain", config_model=SelftrainConfig, build=build)
"""
CONFIG = """
pipeline: selftrain
name: selftrain-demo
tune:
  metric: evaluate/accuracy
  num_samples: 2
  space:
    selftrain.min_confidence: {uniform: [0.3, 0.9]}
    selftrain.lr: {loguniform: [0.01, 0.1]}
"""


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """The plug-in `selftrain` installed, and a file sweeping one key its filter reads and one its evaluation reads."""
    path = tmp_path / "selftrain.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    with installed_plugin(tmp_path / "site", "relay_selftrain_tune", PLUGIN, {"selftrain": "SPEC"}):
        yield path


def test_validate_warns_of_the_key_only_a_left_out_stage_reads(
    config: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_folder = tmp_path / "cwd"
    run_folder.mkdir()
    monkeypatch.chdir(run_folder)
    with caplog.at_level(logging.WARNING, logger="relay"):
        assert main(["validate", str(config)]) == 0
    said = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert [line.split(":", 1)[0] for line in said] == ["tune.space.selftrain.min_confidence"]
    assert "(it is read only by g00/filter, g01/filter, which trials do not run:" in said[0], said[0]
    assert list(run_folder.iterdir()) == []
