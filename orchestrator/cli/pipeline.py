"""`relay run`, `relay resume`, `relay validate`, `relay generations`: one pipeline run, end to end.

This is the composition root of a run: it wires the chosen pipeline to the engine (store,
executor, runner) and to tracking (MLflow on a background thread).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.common import (
    Pipelines,
    add_workspace,
    load_pipeline_config,
    load_saved_config,
    pipeline_code_versions,
    pipelines_of,
    run_dir,
)
from orchestrator.cli.preflight import check_run_id, check_stop_after, open_store
from orchestrator.config import RunSettings, TrackingSettings, artifact_uri, load_yaml, resolve_workspace, tracking_uri
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import Executor, LocalExecutor, RayExecutor
from orchestrator.engine.progress import ProgressDisplay
from orchestrator.engine.runner import Runner
from orchestrator.errors import ConfigError, InputError
from orchestrator.tracking import report
from orchestrator.tracking.background import BackgroundTracker
from orchestrator.tracking.mlflow_tracker import metric_prefix, mlflow_tracker
from orchestrator.tracking.reading import read_generations

log = logging.getLogger("relay")


# --- configuration ---------------------------------------------------------------------


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def save_run_record(directory: Path, config: Any, config_path: str, overrides: list[str]) -> None:
    """The resolved config and the command that made it: `relay resume` reads them back."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    (directory / "command.json").write_text(json.dumps({"config": config_path, "overrides": overrides}))


# --- running ---------------------------------------------------------------------------


def make_executor(settings: RunSettings) -> Executor:
    """Ray by default; `run.executor=local` runs stages in this process (debugging, unit tests)."""
    if settings.executor == "local":
        return LocalExecutor()
    return RayExecutor(address=settings.ray_address, num_cpus=settings.num_cpus)


@dataclass(frozen=True)
class PreparedRun:
    """A run that passed every check and opened its store, with nothing written yet.

    ``rerun`` names the stages to run even when cached (`--rerun-from`, `--no-cache`).
    """

    spec: Any
    config: Any
    run_id: str
    pipeline: Pipeline
    store: ArtifactStore
    stop_after: str | None
    rerun: frozenset[str] = frozenset()


def prepare_run(
    spec: Any,
    config: Any,
    run_id: str,
    stop_after: str | None,
    rerun_from: str | None = None,
    no_cache: bool = False,
) -> PreparedRun:
    """The checks that need the run id and the DAG (the config's own are done), and the store; writes nothing."""
    check_run_id(run_id)
    pipeline = spec.build(config)
    check_stop_after(pipeline, stop_after)
    rerun = stages_to_rerun(pipeline, rerun_from, no_cache)
    return PreparedRun(spec, config, run_id, pipeline, open_store(artifact_uri(config.run)), stop_after, rerun)


def execute(run: PreparedRun, resume: bool) -> int:
    """Run (or resume) one pipeline run end to end and print its generation table.

    Start-up and shutdown overlap what they can: MLflow (its import, the store's creation)
    runs on the tracker's thread while Ray starts; at the end the table is printed first,
    and Ray stops while that thread drains the last MLflow calls. ``tracker.join`` makes
    sure every MLflow write has landed before this returns. While the stages run, their
    progress is shown from the run's progress board (docs/ARCHITECTURE.md, The engine).
    """
    config, run_id, stop_after = run.config, run.run_id, run.stop_after
    workspace = resolve_workspace(config.run)
    uri = tracking_uri(config.run, config.tracking)
    tracker = BackgroundTracker(mlflow_tracker(uri, config.tracking))
    tracker.start_pipeline(run_id, config.name, config.model_dump(mode="json"), resume=resume)
    status, executor = "FAILED", None
    try:
        executor = make_executor(config.run)
        executor.warm_up(run.pipeline)
        runs_dir = run_dir(workspace, run_id).parent
        code = pipeline_code_versions(run.pipeline)
        runner = Runner(run.store, executor, tracker, code, config.seed, runs_dir=runs_dir)
        with ProgressDisplay(executor.open_progress(run_id)):
            summary = runner.run(run.pipeline, run_id, stop_after=stop_after, rerun=run.rerun)
        status = "FINISHED" if stop_after is None else "KILLED"
        if stop_after is None:
            print(f"\nRun {run_id}: per-generation results (test set is balanced)")
            rows = summary_rows(run.pipeline, summary.manifests)
            print(report.generation_table(rows, run.spec.summary), flush=True)
    finally:
        tracker.close(status)  # queued behind the stages' calls; MLflow drains them while Ray stops
        try:
            if executor is not None:
                executor.shutdown()
        finally:
            tracker.join()
    if stop_after is not None:
        print(f"stopped after {stop_after}; finish with: relay resume {run_id}")
        return 0
    print_browse_hint(workspace, uri, tracker.parent_run_id, run_id)
    return 0


def summary_rows(pipeline: Any, manifests: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-generation rows from the run's own manifests: the numbers the parent run gets, without reading MLflow.

    Reading them back (one query per metric key) cost seconds at the end of every run.
    """
    rows: dict[int, dict[str, Any]] = {}
    for stage in pipeline.stages:
        manifest = manifests.get(stage.name)
        if manifest is None or stage.generation is None:
            continue
        row = rows.setdefault(stage.generation, {"generation": stage.generation})
        row.update({f"{metric_prefix(stage.name)}/{key}": value for key, value in manifest.metrics.items()})
    return [rows[g] for g in sorted(rows)]


def print_browse_hint(workspace: Path, uri: str, parent_run_id: str | None, run_id: str) -> None:
    print(f"\nBrowse the generations in MLflow:  relay ui --workspace {workspace}")
    print(f"  (or: mlflow ui --backend-store-uri {uri}) and open run {parent_run_id or run_id}")
    print(f"Table again:  relay generations {run_id} --workspace {workspace}")


# --- reading a run back ------------------------------------------------------------------


def tracking_for(args: argparse.Namespace) -> tuple[str, str, Mapping[str, str] | None]:
    """Tracking URI, experiment and summary columns of a run (or of the workspace's defaults).

    Without a saved config for the run, the columns are those of the pipeline of the
    workspace's newest run record (no run named), else None: every metric of the run.
    """
    pipelines = pipelines_of(args)
    workspace = resolve_workspace(RunSettings(workspace=args.workspace))
    if args.run_id:
        check_run_id(args.run_id)
        if not run_dir(workspace, args.run_id).is_dir():
            raise unknown_run(args.run_id, workspace)
    saved = run_dir(workspace, args.run_id) / "config.yaml" if args.run_id else None
    if saved is not None and saved.exists():
        spec, config = load_saved_config(saved, pipelines)
        return tracking_uri(config.run, config.tracking), config.tracking.experiment, spec.summary
    uri = tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    return uri, args.experiment, None if args.run_id else newest_summary(workspace, pipelines)


def newest_summary(workspace: Path, pipelines: Pipelines) -> Mapping[str, str] | None:
    """The summary columns of the pipeline that the workspace's newest readable run record names."""
    records = sorted((workspace / "runs").glob("*/config.yaml"), key=lambda path: path.stat().st_mtime, reverse=True)
    for saved in records:
        try:
            name = load_yaml(saved).get("pipeline")
        except ConfigError:
            continue
        if name in pipelines:
            return pipelines[name].summary
    return None


def unknown_run(run_id: str, workspace: Path) -> InputError:
    """A run id the workspace has no record of; the message says how to list the ones it has."""
    return InputError(
        f"no run {run_id!r} in the workspace {workspace}; list its runs with `ls {workspace / 'runs'}` "
        "(or pass --workspace)"
    )


def print_generations(uri: str, experiment: str, run_id: str | None, summary: Mapping[str, str] | None) -> None:
    run_name, rows = read_generations(uri, experiment, run_id)
    columns = summary if summary is not None else {name: name for name in report.metric_names(rows)}
    print(f"\nRun {run_name}: per-generation results (test set is balanced)")
    print(report.generation_table(rows, columns))


# --- commands --------------------------------------------------------------------------


def stages_to_rerun(pipeline: Any, rerun_from: str | None, no_cache: bool) -> frozenset[str]:
    """`--no-cache`: every stage; `--rerun-from S`: S and everything downstream of it; else none.

    An unknown stage is a PipelineError naming the valid ones (exit 2, before anything is written).
    """
    if no_cache:
        return frozenset(stage.name for stage in pipeline.stages)
    if rerun_from is None:
        return frozenset()
    return frozenset({pipeline.stage(rerun_from).name, *pipeline.downstream(rerun_from)})


def cmd_run(args: argparse.Namespace) -> int:
    """Check everything (config, data, folders, store, run id, --stop-after), then write the run record and run."""
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args))
    run_id = new_run_id(config.name) if args.run_id is None else args.run_id
    run = prepare_run(spec, config, run_id, args.stop_after, args.rerun_from, args.no_cache)
    save_run_record(run_dir(resolve_workspace(config.run), run.run_id), config, args.config, args.overrides)
    rerun = f", {len(run.rerun)} rerun on request" if run.rerun else ""
    log.info("run %s: %d stages%s", run.run_id, len(run.pipeline.stages), rerun)
    return execute(run, resume=False)


def cmd_resume(args: argparse.Namespace) -> int:
    check_run_id(args.run_id)
    directory = run_dir(resolve_workspace(RunSettings(workspace=args.workspace)), args.run_id)
    saved = directory / "config.yaml"
    if not saved.exists():
        raise unknown_run(args.run_id, directory.parent.parent)
    spec, config = load_saved_config(saved, pipelines_of(args))
    return execute(prepare_run(spec, config, args.run_id, args.stop_after), resume=True)


def cmd_validate(args: argparse.Namespace) -> int:
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args))
    stages = spec.build(config).stages
    print(f"{args.config}: valid `{config.pipeline}` pipeline with {len(stages)} stages")
    return 0


def cmd_generations(args: argparse.Namespace) -> int:
    uri, experiment, summary = tracking_for(args)
    print_generations(uri, experiment, args.run_id, summary)
    return 0


def register(commands: Any) -> None:
    """The run/resume/validate subcommands; run and resume end their process when done (``ends_process``)."""
    run = commands.add_parser("run", help="run a pipeline file", description="relay run CONFIG [key=value ...]")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. crest.generations=2 train.steps=200")
    run.add_argument("--stop-after", help="stop after this stage (e.g. g00/train); finish later with relay resume")
    run.add_argument("--run-id", help="name the run (default: NAME-DATE-TIME-XXXX)")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument(
        "--rerun-from",
        metavar="STAGE",
        help="rerun this stage (e.g. g01/train) and everything downstream of it even if cached; reuse the rest",
    )
    cache.add_argument("--no-cache", action="store_true", help="rerun every stage; cached outputs are not read")
    run.set_defaults(handler=cmd_run, ends_process=True)

    resume = commands.add_parser("resume", help="finish a run; completed stages are skipped")
    resume.add_argument("run_id")
    resume.add_argument("--stop-after")
    add_workspace(resume)
    resume.set_defaults(handler=cmd_resume, ends_process=True)

    validate = commands.add_parser("validate", help="check a pipeline file without running anything")
    validate.add_argument("config")
    validate.add_argument("overrides", nargs="*")
    validate.set_defaults(handler=cmd_validate)


def register_generations(commands: Any) -> None:
    """`relay generations`, registered apart so `relay --help` keeps listing it after `tune`."""
    generations = commands.add_parser("generations", help="per-generation table of a run (default: latest)")
    generations.add_argument("run_id", nargs="?")
    generations.add_argument("--experiment", default="relay")
    add_workspace(generations)
    generations.set_defaults(handler=cmd_generations)
