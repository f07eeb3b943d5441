"""A plug-in's stage reruns when Relay's stage code it imports changes; Relay's own versions stay as they were.

Before, a plug-in stage's code version digested only its own package, so `from pipelines.stages.common
import picks_of` counted as environment: an upgrade that changed `picks_of` reran every Relay stage
and left the plug-in's `g00/select` a cache hit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.code_versions import pipeline_code_versions
from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.engine.fingerprint import code_versions, source_closure

ROOT = Path(__file__).resolve().parents[4]
SELECT = "selftrain_relay.stages"

PLUGIN_STAGES = """
from pipelines.stages.common import picks_of


def select(ctx, inputs, params):
    return picks_of(*inputs)
"""


@pytest.fixture(scope="module")
def relay_copy(tmp_path_factory) -> Path:
    """A copy of Relay's pipelines package to edit (the repository itself is never touched)."""
    package = tmp_path_factory.mktemp("relay") / "pipelines"
    shutil.copytree(ROOT / "pipelines", package, ignore=shutil.ignore_patterns("__pycache__", "configs"))
    return package


def plugin(folder: Path, stages: str = PLUGIN_STAGES) -> Path:
    """A user's package `selftrain_relay` under ``folder`` whose stage module holds ``stages``."""
    package = folder / "selftrain_relay"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stages.py").write_text(stages)
    return package


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_a_plugin_stage_version_covers_the_relay_helpers_it_imports(tmp_path: Path, relay_copy: Path) -> None:
    own = plugin(tmp_path / "user")
    closure = source_closure(SELECT, [own, relay_copy])
    assert {"selftrain_relay", SELECT, "pipelines", "pipelines.stages", "pipelines.stages.common"} <= set(closure)
    assert closure["pipelines.stages.common"] == relay_copy / "stages" / "common.py"

    before = code_versions([SELECT], own, relay_copy)
    common = relay_copy / "stages" / "common.py"
    original = common.read_text()
    edit(common)  # what an upgrade that touched picks_of does
    try:
        assert code_versions([SELECT], own, relay_copy) != before, "the plug-in's stage would stay a cache hit"
    finally:
        common.write_text(original)
    assert code_versions([SELECT], own, relay_copy) == before, "the version is the code's"


def test_relay_code_the_plugin_does_not_import_leaves_its_version(tmp_path: Path, relay_copy: Path) -> None:
    own = plugin(tmp_path / "user")
    before = code_versions([SELECT], own, relay_copy)
    unused = relay_copy / "training" / "fixmatch.py"
    assert "pipelines.training.fixmatch" not in source_closure(SELECT, [own, relay_copy])
    original = unused.read_text()
    edit(unused)
    try:
        assert code_versions([SELECT], own, relay_copy) == before
    finally:
        unused.write_text(original)


def test_a_plugin_that_imports_no_relay_stage_code_keeps_its_version(tmp_path: Path, relay_copy: Path) -> None:
    """Adding Relay's folder changes nothing for a plug-in that does not import from it: no needless rerun."""
    own = plugin(tmp_path / "user", "import torch\nfrom orchestrator.dag import Stage\n\n\ndef select():\n    pass\n")
    assert code_versions([SELECT], own, relay_copy) == code_versions([SELECT], own)


def relay_stage_modules() -> set[str]:
    modules: set[str] = set()
    for config in ("smoke.yaml", "ke_digits.yaml"):
        spec, config_model = load_pipeline_config(str(ROOT / "pipelines" / "configs" / config), [])
        modules |= {stage.fn.__module__ for stage in spec.build(config_model).stages}
    return modules


def test_relay_stage_versions_digest_only_pipelines_as_before() -> None:
    """Relay's own stages get no shared folder, so their digest input (sorted `pipelines.*` names and files)
    and with it every cache already in a store stays as it was."""
    modules = relay_stage_modules()
    assert modules and all(module.startswith("pipelines.stages.") for module in modules)
    spec, config = load_pipeline_config(str(ROOT / "pipelines" / "configs" / "smoke.yaml"), [])
    smoke = spec.build(config)
    assert pipeline_code_versions(smoke) == code_versions({s.fn.__module__ for s in smoke.stages}, ROOT / "pipelines")
    for module in modules:
        assert all(name.split(".")[0] == "pipelines" for name in source_closure(module, ROOT / "pipelines"))
    assert code_versions(modules, ROOT / "pipelines", ROOT / "pipelines") == code_versions(modules, ROOT / "pipelines")


VERSIONS_OF = """
import json
from orchestrator.cli.code_versions import pipeline_code_versions
from orchestrator.dag import Pipeline, Stage
from selftrain_relay.stages import select
print(json.dumps(pipeline_code_versions(Pipeline("p", [Stage("g00/select", select, (), ("picks",))]))))
"""


def versions_from(folder: Path) -> dict[str, str]:
    """The plug-in pipeline's code versions from a fresh process whose path starts with ``folder``,
    which holds the plug-in and a copy of Relay's `pipelines` (so that copy is the Relay it imports)."""
    env = {**os.environ, "PYTHONPATH": str(folder)}
    done = subprocess.run([sys.executable, "-c", VERSIONS_OF], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_cli_reruns_a_plugin_stage_after_an_upgrade_of_the_relay_helper_it_calls(tmp_path: Path) -> None:
    """QA's case: `picks_of` changed, every Relay stage reran, the plug-in's `g00/select` stayed a cache hit."""
    site = tmp_path / "site"
    plugin(site)
    shutil.copytree(ROOT / "pipelines", site / "pipelines", ignore=shutil.ignore_patterns("__pycache__", "configs"))
    before = versions_from(site)
    assert set(before) == {SELECT}
    edit(site / "pipelines" / "stages" / "common.py")
    assert versions_from(site)[SELECT] != before[SELECT]
