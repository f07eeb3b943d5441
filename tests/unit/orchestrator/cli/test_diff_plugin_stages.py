"""`relay diff` names the stages of a plug-in's module whose code differs, as it does for Relay's own modules.

A plug-in's module `relay_qa.qa_filter` ran stages `g00/score` and `g01/score`; after an edit of it,
`relay diff RUN_A RUN_B` showed `relay_qa.qa_filter  -  56a4e7f69933  ffff46b4c585`: the stages were
found by a naming rule (a module's last name as a stage's role) that Relay's modules follow and a
plug-in's need not. Real runs (`relay run`, local executor) of a real installed distribution.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.plugins import installed_plugin

PLUGIN = """
from orchestrator.config import PipelineConfig
from orchestrator.dag import Pipeline, Stage
from orchestrator.registry import PipelineSpec
from relay_qa.qa_filter import keep_confident


class QaConfig(PipelineConfig):
    pass


def build(config):
    stages = [
        Stage(
            name=f"g{g:02d}/score",
            fn=keep_confident,
            inputs=(),
            outputs=(f"g{g:02d}/kept",),
            params={"generation": g},
            generation=g,
        )
        for g in range(2)
    ]
    return Pipeline(config.name, stages)


SPEC = PipelineSpec(name="qa", config_model=QaConfig, build=build, summary={"kept": "score/kept"})
"""
FILTER = """
import pyarrow as pa

from orchestrator.dag import StageResult

THRESHOLD = {threshold}


def keep_confident(ctx, inputs, params):
    kept = pa.table({{"kept": [params["generation"]]}})
    return StageResult(outputs={{f"g{{params['generation']:02d}}/kept": kept}}, metrics={{"kept": THRESHOLD}})
"""
PACKAGE = "relay_qa"


@pytest.fixture
def site(tmp_path: Path, no_store_settings: None) -> Iterator[Path]:
    """An installed distribution `relay-qa` declaring pipeline `qa`, whose stages' function is in relay_qa.qa_filter."""
    with installed_plugin(tmp_path / "site", PACKAGE, PLUGIN, {"qa": "SPEC"}) as folder:
        (folder / PACKAGE / "qa_filter.py").write_text(FILTER.format(threshold=0.5))
        try:
            yield folder
        finally:
            sys.modules.pop(f"{PACKAGE}.qa_filter", None)


def test_diff_lists_the_stages_of_a_plugins_module_whose_code_differs(
    tmp_path: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = tmp_path / "ws"
    config = tmp_path / "qa.yaml"
    config.write_text(textwrap.dedent(f"pipeline: qa\nname: qa\nrun:\n  workspace: {workspace}\n"))
    assert main(["run", str(config), "run.executor=local", "--run-id", "qa-a"]) == 0
    (site / PACKAGE / "qa_filter.py").write_text(FILTER.format(threshold=0.75))  # an edit of the plug-in's module
    assert main(["run", str(config), "run.executor=local", "--run-id", "qa-b"]) == 0
    capsys.readouterr()

    assert main(["diff", "qa-a", "qa-b", "--workspace", str(workspace)]) == 0
    code = capsys.readouterr().out.split("code versions: ")[1].splitlines()
    assert code[0] == "1 of 1 module(s) differ"
    row = re.split(r"\s{2,}", code[3].strip())
    assert row[:2] == ["relay_qa.qa_filter", "g00/score, g01/score"]
