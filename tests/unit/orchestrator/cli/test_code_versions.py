"""The CLI's per-stage code versions: one per stage module, and never an empty digest of an empty folder."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from orchestrator.cli.common import pipeline_code_versions
from orchestrator.dag import Pipeline, Stage
from orchestrator.errors import RelayError
from tests.unit.orchestrator.engine import toy as toy_module


def _never_run(ctx, inputs, params):
    raise AssertionError("a stage of these tests never runs")


def test_every_stage_module_gets_a_version() -> None:
    versions = pipeline_code_versions(toy_module.toy())
    assert set(versions) == {toy_module.__name__}
    assert len(versions[toy_module.__name__]) > 0


def test_a_package_folder_without_python_files_is_refused(tmp_path: Path, monkeypatch) -> None:
    """An installed package whose sources are missing would give every stage a new fingerprint silently."""
    folder = tmp_path / "emptypkg"
    folder.mkdir()
    package = types.ModuleType("emptypkg")
    package.__file__ = str(folder / "__init__.py")  # what import saw; the folder no longer holds it
    monkeypatch.setitem(sys.modules, "emptypkg", package)

    body = types.FunctionType(_never_run.__code__, globals(), "_never_run")  # a copy that says where it lives
    body.__module__ = "emptypkg.stages"
    with pytest.raises(RelayError, match=r"no Python files under .*emptypkg.*emptypkg\.stages"):
        pipeline_code_versions(Pipeline("p", [Stage("only", body, (), ("out",))]))
