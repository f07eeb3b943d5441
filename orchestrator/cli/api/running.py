"""`relay.run` and `relay.resume`: a pipeline run from Python, through the handlers of `relay run|resume`.

They call what the commands' handlers run (``pipeline.start_run``, ``pipeline.resume_run``) with the
arguments `relay` would have parsed, and return a ``RunResult`` read from the run's record and manifests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.api.calls import (
    PathLike,
    as_flag,
    checked_config_argument,
    checked_flag,
    checked_overrides,
    checked_path,
    checked_reader_args,
    checked_texts,
    command_args,
    mlflow_quieted,
)
from orchestrator.cli.api.reading import finished_manifests
from orchestrator.cli.common import new_run_id, pipelines_of, store_of
from orchestrator.cli.installed_pipelines import installed_pipelines
from orchestrator.cli.pipeline_files import BY_OVERRIDES, load_pipeline_config
from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.run import pipeline
from orchestrator.cli.run.closing_lines import summary_rows
from orchestrator.cli.run.execution import RunEnd
from orchestrator.cli.run.run_locations import resolved_locations
from orchestrator.cli.run.run_record import read_run_record
from orchestrator.config import RunSettings, apply_overrides, artifact_uri, load_yaml, resolve_workspace
from orchestrator.config.values import name_problem
from orchestrator.engine.signals import interrupts_outside_imports
from orchestrator.errors import ConfigError, InputError, RelayError


@dataclass(frozen=True)
class RunResult:
    """What a run (or resume) left: where to find it again, and its per-generation numbers.

    ``generations``: one dict per generation, ``{"generation": 0, "evaluate/balanced_accuracy": 0.71, ...}``,
    the numbers the run's closing table shows and its MLflow parent run holds at step = generation
    (read from the run's stage manifests, so they are there even when the tracking store stopped answering).
    ``status``: as `relay runs` shows it (FINISHED, STOPPED after ``stop_after``). ``mlflow_run_id``: the
    parent MLflow run (None when the tracking store lost the run, see ``relay generations``).
    """

    run_id: str
    status: str
    workspace: Path
    artifact_uri: str
    tracking_uri: str
    experiment: str
    mlflow_run_id: str | None
    generations: list[dict[str, Any]] = field(default_factory=list)


@mlflow_quieted()
def run(
    config: PathLike | Mapping[str, Any],
    overrides: Sequence[str] = (),
    workspace: PathLike | None = None,
    address: str | None = None,
    *,
    run_id: str | None = None,
    stop_after: str | None = None,
    rerun_from: str | None = None,
    no_cache: bool = False,
) -> RunResult:
    """`relay run CONFIG OVERRIDES...`: check everything, run the pipeline, return its result.

    ``config``: a pipeline file, or its content as a mapping (as ``yaml.safe_load`` reads a file).
    ``overrides``: dotted ``key=value`` strings, as on the command line. ``workspace``: the same as
    the override ``run.workspace=PATH`` (default: $RELAY_WORKSPACE, else ./relay-workspace).
    ``address``, ``run_id``, ``stop_after``, ``rerun_from``, ``no_cache``: the flags of the same names.
    """
    checked_config_argument(config)
    given = [*checked_overrides(overrides), *workspace_override(checked_path("workspace", workspace))]
    checked_texts(address=address, run_id=run_id, stop_after=stop_after, rerun_from=rerun_from)
    checked_flag("no_cache", no_cache)
    with workspace_argument_named(workspace), config_file(config) as path:
        chosen = run_id or generated_run_id(path, given)
        args = command_args(
            "run",
            config=str(path),
            overrides=given,
            address=address,
            run_id=chosen,
            stop_after=stop_after,
            rerun_from=rerun_from,
            no_cache=no_cache,
        )
        args.overrides_origin = BY_OVERRIDES  # a problem an override caused names it so: there is no command line
        return run_result(handled(pipeline.start_run, args, workspace))


@mlflow_quieted()
def resume(
    run_id: str,
    workspace: PathLike | None = None,
    address: str | None = None,
    *,
    artifact_uri: str | None = None,
    stop_after: str | None = None,
) -> RunResult:
    """`relay resume RUN_ID`: finish a run from its record; completed stages are skipped.

    ``workspace``/``artifact_uri``: where the run's record is (the flags --workspace, --artifact-uri).
    """
    checked_reader_args(run_id, workspace, artifact_uri)
    checked_texts(address=address, stop_after=stop_after)
    args = command_args(
        "resume",
        run_id=run_id,
        workspace=as_flag(workspace),
        artifact_uri=artifact_uri,
        address=address,
        stop_after=stop_after,
    )
    return run_result(handled(pipeline.resume_run, args, workspace))


def workspace_override(workspace: PathLike | None) -> list[str]:
    """``run.workspace=PATH`` for a workspace given, the value quoted so any path parses as one string."""
    return [] if workspace is None else [f"run.workspace={json.dumps(str(workspace))}"]


@contextlib.contextmanager
def workspace_argument_named(workspace: PathLike | None) -> Iterator[None]:
    """A refusal of the workspace the call was given names the argument, not the override it is passed as.

    Why: ``relay.run(cfg, workspace="/a/file")`` was refused "(set by overrides: run.workspace=...)", an
    override the caller never wrote. The override is the last one given, so ``from_override`` names it
    last: alone, or after the caller's own overrides that the same problem names.
    """
    try:
        yield
    except ConfigError as exc:
        (override,) = workspace_override(workspace) or [None]
        problems = [argument_named(problem, override, workspace) for problem in exc.problems]
        if override is None or problems == exc.problems:
            raise
        raise ConfigError(problems, exc.source) from exc.__cause__


def argument_named(problem: str, override: str | None, workspace: PathLike | None) -> str:
    """``problem`` with the override ``override`` named as the argument ``workspace=`` it stands for."""
    alone, last = f"({BY_OVERRIDES}: {override})", f", {override})"
    argument = f"the argument workspace={str(workspace)!r}"
    if override is not None and problem.endswith(alone):
        return f"{problem.removesuffix(alone)}(set by {argument})"
    if override is not None and problem.endswith(last) and f"({BY_OVERRIDES}: " in problem:
        return f"{problem.removesuffix(last)}; and by {argument})"
    return problem


@contextlib.contextmanager
def config_file(config: PathLike | Mapping[str, Any]) -> Iterator[Path]:
    """The pipeline file to run: ``config`` itself, or a mapping written to a temporary file for as long as it runs.

    Why a file: the CLI reads and records a config by its file (the run record's command, the
    MLflow run's rerunnable config.yaml), and the temporary folder is outside every workspace.
    """
    if not isinstance(config, Mapping):
        yield Path(config)
        return
    name = config.get("name")
    stem = name if isinstance(name, str) and name_problem(name, "name") is None else "config"
    try:
        content = yaml.safe_dump(dict(config), sort_keys=False)
    except yaml.YAMLError as exc:
        raise ConfigError(
            [f"not plain YAML data (strings, numbers, lists, mappings): {exc}"], "the config mapping"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="relay-api-") as folder:
        path = Path(folder) / f"{stem}.yaml"
        path.write_text(content, encoding="utf-8")
        yield path


def generated_run_id(path: Path, overrides: Sequence[str]) -> str | None:
    """The id `relay run` would make up (``NAME-DATE-TIME-XXXX``), made here so the call can return it.

    None when the file or its name cannot be read: the run's own checks then say what is wrong,
    with the CLI's message, before any id is needed.
    """
    try:
        name = apply_overrides(load_yaml(path), list(overrides)).get("name")
    except ConfigError:
        return None
    return new_run_id(name) if isinstance(name, str) and name_problem(name, "name") is None else None


def handled(
    command: Callable[[argparse.Namespace], RunEnd], args: argparse.Namespace, workspace: PathLike | None
) -> RunEnd:
    """Run a command's handler; a failure after the checks says which run to resume, and how (a note on the error).

    ``workspace``: the call's argument, which the note repeats where it finds the run's store. A Ctrl-C (a
    notebook's interrupt) that lands inside Python's import machinery is raised a moment later, as in the
    `relay` command (``interrupts_outside_imports``).
    """
    try:
        with interrupts_outside_imports():
            return command(args)
    except InputError:  # checked before anything was written: nothing to resume
        raise
    except RelayError as exc:
        exc.add_note(f"Relay run {args.run_id}: finish it with {resume_call(args, workspace)}")
        raise


def resume_call(args: argparse.Namespace, workspace: PathLike | None) -> str:
    """The ``relay.resume`` call that finds the run's record: with the call's ``workspace`` where that holds its
    store, else with ``artifact_uri``, and with neither where the default store is the run's.

    Why: the note said ``relay.resume('ID')`` whatever the run's store, and for a run in another workspace
    that call failed ("no run ... in the artifact store ./relay-workspace/artifacts"); the CLI's hint adds
    --artifact-uri for the same reason (``store_option``).
    """
    store = run_store(args)
    arguments = [repr(args.run_id)]
    if store is None or store == artifact_uri(RunSettings()):
        pass
    elif workspace is not None and store == artifact_uri(RunSettings(workspace=str(workspace))):
        arguments.append(f"workspace={str(workspace)!r}")
    else:
        arguments.append(f"artifact_uri={store!r}")
    return f"relay.resume({', '.join(arguments)})"


def run_store(args: argparse.Namespace) -> str | None:
    """The artifact store the run's record is in, as `relay run` (its config) or `relay resume` (its flags) chose
    it; None when that cannot be told again (the config file changed meanwhile)."""
    try:
        if args.command == "resume":
            return store_of(args).uri
        _, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args), origin=BY_OVERRIDES)
        return resolved_locations(config).store
    except (RelayError, OSError):
        return None


def run_result(end: RunEnd) -> RunResult:
    """The ``RunResult`` of a run that returned, from its record in its store."""
    store, run_id = end.store, end.run_id
    spec, config = read_run_record(store, run_id, installed_pipelines())
    tracking = config.tracking
    return RunResult(
        run_id=run_id,
        status=str(run_status(store, run_id)),  # a plain str, as a user's yaml/pickle expects
        workspace=resolve_workspace(config.run),
        artifact_uri=store.uri,
        tracking_uri=tracking.uri,
        experiment=tracking.experiment,
        mlflow_run_id=end.mlflow_run_id,
        generations=summary_rows(spec.build(config), finished_manifests(store, run_id)),
    )
