"""The CLI's per-stage code versions: one per stage module, and never an empty digest of an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from orchestrator.cli.code_versions import pipeline_code_versions
from orchestrator.dag import Pipeline, Stage
from orchestrator.errors import RelayError
from tests.unit.orchestrator.engine import toy as toy_module

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


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


VERSIONS_OF = """
import json, sys
from orchestrator.cli.code_versions import pipeline_code_versions
from orchestrator.cli.pipeline_files import load_pipeline_file
spec, config, _ = load_pipeline_file(sys.argv[1], [], local=False)
print(json.dumps(pipeline_code_versions(spec.build(config))))
"""


def versions_from(folder: Path) -> dict[str, str]:
    """The smoke pipeline's code versions, computed in a fresh process whose path starts with ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", VERSIONS_OF, str(SMOKE)], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_project_folder_named_pipelines_does_not_cost_the_stages_their_code_versions(tmp_path: Path) -> None:
    """A Ray job's working folder comes first on the path; one holding pipelines/configs/ (no __init__.py) made
    `pipelines` a namespace package without a file, every stage lost its code version (the ledger's
    code_version read {}) and a cluster run's cache ignored edits of the stages' code."""
    project = tmp_path / "project"
    (project / "pipelines" / "configs").mkdir(parents=True)
    (project / "pipelines" / "configs" / "mine.yaml").write_text("pipeline: crest\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    shadowed = versions_from(project)
    assert shadowed and shadowed == versions_from(plain)
