"""A plug-in that is installed but whose module fails to import is named as such, not as an unknown pipeline.

A user's `relay.pipelines` plug-in whose spec module imported a missing module got a warning, then
`pipeline: expected one of crest, ... (... pip install it, or put it on PYTHONPATH ...), got 'qa_filter'`:
advice that did not apply (the package was installed) and, for PYTHONPATH, was wrong (a folder on it
declares no entry point). The plug-ins here are real installed distributions, found through their entry
points as `relay` finds every plug-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.plugins import installed_plugin

BROKEN = """
import not_a_module_xyz

SPEC = None
"""

NOT_A_SPEC = """
SPEC = {"qa_filter": "not a spec"}
"""


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution `qa-filter` 0.1 declaring `qa_filter`, whose module imports a missing module."""
    with installed_plugin(tmp_path / "site", "qa_filter", BROKEN, {"qa_filter": "SPEC"}):
        yield tmp_path


def config_file(folder: Path, pipeline: str = "qa_filter") -> Path:
    path = folder / "qa.yaml"
    path.write_text(f"pipeline: {pipeline}\nname: qa\nrun:\n  workspace: {folder / 'ws'}\n")
    return path


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_installed_plugin_whose_module_fails_to_import_is_named_with_the_error(
    broken: Path, command: str, capsys
) -> None:
    assert main([command, str(config_file(broken))]) == 2
    err = capsys.readouterr().err
    assert (
        "pipeline: 'qa_filter': the plug-in qa-filter 0.1 declares it (entry point qa_filter = qa_filter:SPEC in "
        "group relay.pipelines), but its module failed to import (ModuleNotFoundError: No module named "
        "'not_a_module_xyz'); fix the plug-in (`python -c 'import qa_filter'` shows the error), then run again"
    ) in err
    assert "expected one of" not in err and "Traceback" not in err
    assert not (broken / "ws").exists(), "nothing is written"


def test_another_name_of_a_broken_plugin_is_said_it_may_come_from_it(broken: Path, capsys, caplog) -> None:
    """The entry point's name need not be its pipeline's: an unknown name points at the entry point that failed."""
    assert main(["validate", str(config_file(broken, "qa"))]) == 2
    err = capsys.readouterr().err
    assert "pipeline: expected one of crest, " in err and "got 'qa'" in err
    assert (
        "(entry point qa_filter of group relay.pipelines failed to load, and may declare it: its warning says why)"
        in err
    )
    warned = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(
        "ignoring entry point qa_filter = qa_filter:SPEC in group relay.pipelines: No module named" in w for w in warned
    )


def test_an_entry_point_naming_no_spec_is_named_with_what_it_names(tmp_path: Path, capsys) -> None:
    with installed_plugin(tmp_path / "site", "qa_filter", NOT_A_SPEC, {"qa_filter": "SPEC"}):
        assert main(["validate", str(config_file(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert (
        "pipeline: 'qa_filter': the plug-in qa-filter 0.1 declares it (entry point qa_filter = qa_filter:SPEC in "
        "group relay.pipelines), but expected a PipelineSpec or a mapping of them, got dict; point the entry point "
        "at one"
    ) in err


def test_a_plugin_only_on_pythonpath_is_told_to_be_installed_as_the_docs_say(tmp_path: Path, capsys) -> None:
    """A folder on PYTHONPATH declares no entry point (docs/ARCHITECTURE.md, "As a plug-in package")."""
    assert main(["validate", str(config_file(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "`pip install` the package, or `pip install -e` its folder" in err
    assert "a folder on PYTHONPATH alone makes its modules importable, not its entry point" in err
    assert "or put it on PYTHONPATH" not in err
    assert "`relay submit` ships the current folder's code, not its entry point" in err
