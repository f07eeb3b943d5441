"""The info line on a plug-in given Relay's data wiring is said where a file of it is checked, not by every command.

A user's `relay.pipelines` plug-in (its config reads Relay's data section, its spec sets no `data`) had
`INFO relay: pipeline 'selftrain' sets no PipelineSpec.data ...` printed by `relay runs`, `relay
generations` and `relay diff` too, which check no file of it. The plug-in is a real installed
distribution; the dataset a real `relay data import`; the runs real `relay run`s on the local executor.
Each command starts with the entry points loaded afresh, as each `relay` process does.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.registry import load_pipelines
from tests.unit.orchestrator.cli.test_plugin_relay_wiring import PLUGIN  # the plug-in whose spec sets no data
from tests.unit.orchestrator.plugins import installed_plugin

LINE = "pipeline 'selftrain' sets no PipelineSpec.data"


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `relay-selftrain` declaring `selftrain`, whose spec sets none of Relay's wiring."""
    with installed_plugin(tmp_path / "site", "relay_selftrain", PLUGIN, {"selftrain": "SPEC"}):
        yield tmp_path


def relay(args: list[str], caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """``main(args)`` as a fresh `relay` process runs it: its exit code and how often it said the wiring line."""
    load_pipelines.cache_clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="relay"):
        code = main(args)
    return code, sum(LINE in record.getMessage() for record in caplog.records)


def test_the_line_is_said_once_by_commands_that_check_a_file_and_not_by_read_only_ones(
    plugin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset, workspace = plugin / "dataset", plugin / "ws"
    config = plugin / "selftrain.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            pipeline: selftrain
            name: mine
            data:
              name: parquet
              uri: {dataset}
            run:
              workspace: {workspace}
              executor: local
            """
        )
    )
    assert relay(["data", "import", "digits", str(dataset)], caplog) == (0, 0)
    assert relay(["validate", str(config)], caplog) == (0, 1)
    assert relay(["run", str(config), "--run-id", "first"], caplog) == (0, 1)
    assert relay(["run", str(config), "--run-id", "second", "seed=1"], caplog) == (0, 1)
    assert relay(["runs", "--workspace", str(workspace)], caplog) == (0, 0)
    assert relay(["generations", "first", "--workspace", str(workspace)], caplog) == (0, 0)
    assert relay(["diff", "first", "second", "--workspace", str(workspace)], caplog) == (0, 0)
