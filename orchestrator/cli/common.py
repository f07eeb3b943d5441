"""What the command groups share: finding pipelines, resolving a config file, a run's folder, common flags.

The CLI names no algorithm: pipelines come from the ``relay.pipelines`` entry points
(``orchestrator.registry.load_pipelines``) unless the caller hands ``main`` its own mapping.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.cli.preflight import location_problems
from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.dag import Pipeline
from orchestrator.engine.fingerprint import code_versions
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec, get_pipeline, load_pipelines

Pipelines = Mapping[str, PipelineSpec]
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def pipelines_of(args: argparse.Namespace) -> Pipelines:
    """The pipelines ``main`` was given, else every one the installed entry points declare."""
    given = getattr(args, "pipelines", None)
    return given if given is not None else load_pipelines()


def load_pipeline_config(
    path: str, overrides: list[str], pipelines: Pipelines | None = None, local: bool = True
) -> tuple[Any, Any]:
    """YAML -> dict -> dotted overrides -> validated config -> preflight; every problem raised at once.

    The preflight covers the data (the pipeline's own check) and where a run would write
    (workspace, artifact store, tracking database); ``local`` False checks only what does not
    depend on this machine's folders (``relay submit``: they are the cluster's).
    """
    data = apply_overrides(load_yaml(path), overrides)
    spec = get_pipeline(data.get("pipeline"), load_pipelines() if pipelines is None else pipelines, source=path)
    config = validate_config(spec.config_model, data, source=path)
    problems = [*spec.preflight(config), *location_problems(config.run, config.tracking, local)]
    if problems:
        raise ConfigError(problems, path)
    spec.build(config)  # DAG errors (cycles, missing inputs) surface before anything is written
    return spec, config


def load_saved_config(saved: Path, pipelines: Pipelines) -> tuple[Any, Any]:
    """The pipeline spec and validated config of a run, from the config.yaml saved when it started."""
    data = load_yaml(str(saved))
    spec = get_pipeline(data.get("pipeline"), pipelines, source=str(saved))
    config = validate_config(spec.config_model, data, source=str(saved))
    problems = location_problems(config.run, config.tracking)
    if problems:
        raise ConfigError(problems, str(saved))
    return spec, config


def pipeline_code_versions(pipeline: Pipeline) -> dict[str, str]:
    """Stage module -> its code version: the module and what it imports from its own package, transitively.

    The package of each stage body is found from the body's module name (its top-level package,
    imported without the body itself, so the driver loads no torch), so a user's package is
    digested exactly like Relay's own, and an edit reruns only the stages whose code it touches.
    """
    by_package: dict[str, set[str]] = {}
    for stage in pipeline.stages:
        module = getattr(stage.fn, "__module__", "")
        by_package.setdefault(module.split(".")[0], set()).add(module)
    versions: dict[str, str] = {}
    for top, modules in sorted(by_package.items()):
        package = importlib.import_module(top)
        if getattr(package, "__file__", None):
            versions.update(code_versions(modules, Path(package.__file__).parent))
    return versions


def run_dir(workspace: Path, run_id: str) -> Path:
    return workspace / "runs" / run_id


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default: $RELAY_WORKSPACE or ./relay-workspace)")


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray dashboard address, e.g. http://HOST:8265 (default: $RAY_ADDRESS)")
