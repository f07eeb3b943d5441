"""`relay validate` refuses a plug-in's stage function that cannot be called as fn(ctx, inputs, params).

A user's plug-in with `def filter_labels(ctx, inputs)` was "valid", and `relay run` failed with a TypeError
only after the stages before it had run. The plug-in is a real installed distribution, found through its
entry point as `relay` finds every plug-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.errors import PipelineError
from tests.unit.orchestrator.plugins import installed_plugin

PLUGIN = """
from orchestrator.config import PipelineConfig
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.registry import PipelineSpec


class QaConfig(PipelineConfig):
    pass


def make_labels(ctx, inputs, params):
    return StageResult(outputs={"g00/labels": None}, metrics={})


def filter_labels(ctx, inputs):
    return StageResult(outputs={"g00/filtered": None}, metrics={})


def build(config):
    return Pipeline(
        config.name,
        [
            Stage(name="g00/make", fn=make_labels, inputs=(), outputs=("g00/labels",), generation=0),
            Stage(name="g00/filter", fn=filter_labels, inputs=("g00/labels",), outputs=("g00/filtered",), generation=0),
        ],
    )


SPEC = PipelineSpec(name="qa_filter", config_model=QaConfig, build=build)
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `qa-filter` declaring `qa_filter`, whose second stage takes (ctx, inputs)."""
    with installed_plugin(tmp_path / "site", "qa_filter", PLUGIN, {"qa_filter": "SPEC"}):
        yield tmp_path


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_stage_function_without_params_is_refused_before_anything_runs(plugin: Path, command: str, capsys) -> None:
    config = plugin / "qa.yaml"
    config.write_text(f"pipeline: qa_filter\nname: qa\nrun:\n  workspace: {plugin / 'ws'}\n")
    assert main([command, str(config)]) == 2
    captured = capsys.readouterr()
    assert (
        "stage 'g00/filter': fn filter_labels(ctx, inputs) cannot be called as fn(ctx, inputs, params) "
        "(too many positional arguments); a stage function takes the context, its inputs and its params "
        "positionally: def fn(ctx, inputs, params) -> StageResult"
    ) in captured.err
    assert "valid `qa_filter`" not in captured.out and "Traceback" not in captured.err
    assert not (plugin / "ws").exists(), "nothing is written"


def take_all(*args):
    return StageResult(outputs={"out": None}, metrics={})


def with_defaults(ctx, inputs, params, extra=1, *, flag=False):
    return StageResult(outputs={"out": None}, metrics={})


def keyword_params(ctx, inputs, *, params):
    return StageResult(outputs={"out": None}, metrics={})


@pytest.mark.parametrize("fn", [take_all, with_defaults])
def test_functions_callable_with_three_positional_arguments_pass(fn) -> None:
    Pipeline("ok", [Stage(name="s", fn=fn, inputs=(), outputs=("out",))])


def test_params_only_by_keyword_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"fn keyword_params\(ctx, inputs, \*, params\) cannot be called"):
        Pipeline("bad", [Stage(name="s", fn=keyword_params, inputs=(), outputs=("out",))])


def test_every_relay_stage_body_and_the_function_it_names_pass() -> None:
    """Relay's own stages are StageBody objects (pipelines.stages.refs): each, and the function it imports, binds."""
    from pipelines.stages import refs

    bodies = [value for value in vars(refs).values() if isinstance(value, refs.StageBody)]
    assert len(bodies) > 5
    for body in bodies:
        for fn in (body, body.resolve()):
            Pipeline("relay", [Stage(name="s", fn=fn, inputs=(), outputs=("out",))])
