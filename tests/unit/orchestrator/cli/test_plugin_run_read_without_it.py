"""A plug-in pipeline's run, read where the plug-in is not installed: its metrics still show.

QA's case: `relay generations RUN_ID` of a run made by a plug-in (a `relay.pipelines` entry point of
another package) exited 2 asking to install the plug-in, on a machine or in a shell without it, and
`relay runs` showed `best -` for it with no word why. The run here is a real one (`relay run`, local
executor, the workspace's MLflow store) of a real installed distribution, which is then uninstalled
the way Python sees it: its folder leaves sys.path, so the entry points no longer declare it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.registry import load_pipelines
from tests.unit.orchestrator.plugins import installed_plugin, uninstall_plugin

PLUGIN = """
import pyarrow as pa

from orchestrator.config import PipelineConfig, StrictModel
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.registry import PipelineSpec


class SelftrainSection(StrictModel):
    generations: int = 2


class SelftrainConfig(PipelineConfig):
    selftrain: SelftrainSection = SelftrainSection()


def evaluate(ctx, inputs, params):
    generation = params["generation"]
    scores = pa.table({"score": [generation]})
    return StageResult(outputs={f"g{generation:02d}/scores": scores}, metrics={"accuracy": 0.5 + 0.25 * generation})


def build(config):
    stages = [
        Stage(
            name=f"g{g:02d}/evaluate",
            fn=evaluate,
            inputs=(),
            outputs=(f"g{g:02d}/scores",),
            params={"generation": g},
            generation=g,
        )
        for g in range(config.selftrain.generations)
    ]
    return Pipeline(config.name, stages)


SPEC = PipelineSpec(
    name="selftrain", config_model=SelftrainConfig, build=build, summary={"self accuracy": "evaluate/accuracy"}
)
"""
PACKAGE = "relay_selftrain"
RUN_ID = "selftrain-run"
NOT_INSTALLED = "'selftrain', which no package installed here declares"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `relay-selftrain` declaring pipeline `selftrain`; uninstalled after the test."""
    with installed_plugin(tmp_path / "site", PACKAGE, PLUGIN, {"selftrain": "SPEC"}) as folder:
        yield folder


@pytest.fixture
def workspace(tmp_path: Path, site: Path, no_store_settings: None, capsys: pytest.CaptureFixture) -> Path:
    """A workspace holding one finished two-generation run of `selftrain`, made while it was installed;
    the plug-in is uninstalled when the test starts."""
    folder = tmp_path / "ws"
    config = tmp_path / "selftrain.yaml"
    config.write_text(textwrap.dedent(f"pipeline: selftrain\nname: mine\nrun:\n  workspace: {folder}\n"))
    assert main(["run", str(config), "run.executor=local", "--run-id", RUN_ID]) == 0
    assert main(["runs", "--workspace", str(folder)]) == 0
    assert "accuracy 0.7500 (g01)" in capsys.readouterr().out  # the best the plug-in's headline gives
    uninstall_plugin(site, PACKAGE)  # as for a shell without it
    assert "selftrain" not in load_pipelines() and "crest" in load_pipelines()
    return folder


def metric_lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith(("metric", "evaluate/"))]


@pytest.mark.parametrize("named", [True, False], ids=["run-id", "newest"])
def test_generations_of_a_plugin_run_shows_every_metric_without_the_plugin(
    workspace: Path, named: bool, capsys: pytest.CaptureFixture
) -> None:
    """It exited 2: "the run was made by pipeline 'selftrain', which no package installed here declares"."""
    argv = ["generations", *([RUN_ID] if named else []), "--workspace", str(workspace)]
    assert main(argv) == 0
    said = capsys.readouterr()
    assert f"Run {RUN_ID}: every metric per generation" in said.out
    assert metric_lines(said.out) == [["metric", "g00", "g01"], ["evaluate/accuracy", "0.5000", "0.7500"]]
    assert said.err.count(NOT_INSTALLED) == 1 and "so its table is every metric" in said.err


def test_runs_says_why_a_plugin_runs_best_is_not_shown(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["runs", "--workspace", str(workspace)]) == 0
    said = capsys.readouterr()
    row = next(line.split() for line in said.out.splitlines() if line.startswith(RUN_ID))
    assert row[:5] == [RUN_ID, "selftrain", "FINISHED", "2/2", "-"]
    assert said.err.count("best is -") == 1
    assert "no package installed here declares (pipeline 'selftrain': selftrain-run)" in said.err


def test_resume_still_needs_the_plugin(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    """Commands that compute the run keep refusing: they need the pipeline's code."""
    assert main(["resume", RUN_ID, "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert f"the run was made by pipeline {NOT_INSTALLED}" in err and "install the package" in err
