"""`relay`: the command line and the composition root that wires pipelines to the engine.

Exit codes: 0 success, 1 a stage or the cluster failed (the resume command is printed),
2 bad input (config, overrides, paths): nothing is written for bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator import report
from orchestrator.artifacts import ArtifactStore
from orchestrator.async_tracking import BackgroundTracker
from orchestrator.config import (
    RunSettings,
    apply_overrides,
    artifact_uri,
    load_yaml,
    resolve_workspace,
    tracking_uri,
    validate_config,
)
from orchestrator.errors import ConfigError, PipelineError, RelayError, StageError
from orchestrator.runner import Runner
from orchestrator.tracking import MlflowTracker, metric_prefix, read_generations

log = logging.getLogger("relay")
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
QUIET_LOGGERS = ("ray", "mlflow", "alembic", "urllib3", "filelock", "matplotlib", "torch")


# --- configuration ---------------------------------------------------------------------


def load_pipeline_config(path: str, overrides: list[str]) -> tuple[Any, Any]:
    """YAML -> dict -> dotted overrides -> validated config -> preflight; every problem raised at once."""
    from pipelines.registry import get_pipeline

    data = apply_overrides(load_yaml(path), overrides)
    spec = get_pipeline(data.get("pipeline"), source=path)
    config = validate_config(spec.config_model, data, source=path)
    problems = spec.preflight(config)
    if problems:
        raise ConfigError(problems, path)
    spec.build(config)  # DAG errors (cycles, missing inputs) surface before anything is written
    return spec, config


def code_version() -> str:
    """Digest of the pipelines' source: a code change invalidates cached stage outputs."""
    import pipelines

    digest = hashlib.sha256()
    for path in sorted(Path(pipelines.__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_dir(workspace: Path, run_id: str) -> Path:
    return workspace / "runs" / run_id


def save_run_record(directory: Path, config: Any, config_path: str, overrides: list[str]) -> None:
    """The resolved config and the command that made it: `relay resume` reads them back."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    (directory / "command.json").write_text(json.dumps({"config": config_path, "overrides": overrides}))


# --- running ---------------------------------------------------------------------------


def make_executor(settings: RunSettings) -> Any:
    """Ray by default; `run.executor=local` runs stages in this process (debugging, unit tests)."""
    if settings.executor == "local":
        from orchestrator.executor import LocalExecutor

        return LocalExecutor()
    from orchestrator.executor import RayExecutor

    return RayExecutor(address=settings.ray_address, num_cpus=settings.num_cpus)


def execute(spec: Any, config: Any, run_id: str, resume: bool, stop_after: str | None) -> int:
    """Run (or resume) one pipeline run end to end and print its generation table.

    Start-up and shutdown overlap what they can: MLflow (its import, the store's creation)
    runs on the tracker's thread while Ray starts; at the end the table is printed first,
    and Ray stops while that thread drains the last MLflow calls. ``tracker.join`` makes
    sure every MLflow write has landed before this returns.
    """
    workspace = resolve_workspace(config.run)
    uri = tracking_uri(config.run, config.tracking)
    tracker = BackgroundTracker(MlflowTracker(
        uri, config.tracking.experiment, strict=config.tracking.strict, log_models=config.tracking.log_models,
        system_metrics=config.tracking.system_metrics,
        system_metrics_interval_s=config.tracking.system_metrics_interval_s,
    ))
    tracker.start_pipeline(run_id, config.name, config.model_dump(mode="json"), resume=resume)
    pipeline = spec.build(config)
    status, executor = "FAILED", None
    try:
        executor = make_executor(config.run)
        warm_workers(executor, pipeline)
        runner = Runner(
            ArtifactStore(artifact_uri(config.run)), executor, tracker, code_version(), config.seed,
            runs_dir=run_dir(workspace, run_id).parent,
        )
        summary = runner.run(pipeline, run_id, stop_after=stop_after)
        status = "FINISHED" if stop_after is None else "KILLED"
        if stop_after is None:
            print(f"\nRun {run_id}: per-generation results (test set is balanced)")
            print(report.generation_table(summary_rows(pipeline, summary.manifests), spec.summary), flush=True)
    finally:
        tracker.close(status)  # queued behind the stages' calls; MLflow drains them while Ray stops
        try:
            shutdown = getattr(executor, "shutdown", None)
            if shutdown is not None:
                shutdown()
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


def warm_workers(executor: Any, pipeline: Any) -> None:
    """Let the executor import the stage functions' modules in as many workers as stages can run at once.

    Those imports (torch, torchvision) otherwise land on the first stage of every worker.
    """
    warm = getattr(executor, "warm", None)
    if warm is not None:
        modules = sorted({"orchestrator.runner", *(stage.fn.__module__ for stage in pipeline.stages)})
        warm(modules, max(len(layer) for layer in pipeline.layers()))


def print_generations(uri: str, experiment: str, run_id: str | None, summary: dict[str, str]) -> None:
    run_name, rows = read_generations(uri, experiment, run_id)
    print(f"\nRun {run_name}: per-generation results (test set is balanced)")
    print(report.generation_table(rows, summary))


def print_browse_hint(workspace: Path, uri: str, parent_run_id: str | None, run_id: str) -> None:
    print(f"\nBrowse the generations in MLflow:  relay ui --workspace {workspace}")
    print(f"  (or: mlflow ui --backend-store-uri {uri}) and open run {parent_run_id or run_id}")
    print(f"Table again:  relay generations {run_id} --workspace {workspace}")


# --- commands --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    spec, config = load_pipeline_config(args.config, args.overrides)
    run_id = args.run_id or new_run_id(config.name)
    save_run_record(run_dir(resolve_workspace(config.run), run_id), config, args.config, args.overrides)
    log.info("run %s: %d stages", run_id, len(spec.build(config).stages))
    return execute(spec, config, run_id, resume=False, stop_after=args.stop_after)


def load_saved_config(saved: Path) -> tuple[Any, Any]:
    """The pipeline spec and validated config of a run, from the config.yaml saved when it started."""
    from pipelines.registry import get_pipeline

    data = load_yaml(str(saved))
    spec = get_pipeline(data.get("pipeline"), source=str(saved))
    return spec, validate_config(spec.config_model, data, source=str(saved))


def cmd_resume(args: argparse.Namespace) -> int:
    directory = run_dir(resolve_workspace(RunSettings(workspace=args.workspace)), args.run_id)
    saved = directory / "config.yaml"
    if not saved.exists():
        raise ConfigError([f"run_id: no run {args.run_id!r} under {directory.parent}; list runs with `ls {directory.parent}` or pass --workspace"])
    spec, config = load_saved_config(saved)
    return execute(spec, config, args.run_id, resume=True, stop_after=args.stop_after)


def cmd_validate(args: argparse.Namespace) -> int:
    spec, config = load_pipeline_config(args.config, args.overrides)
    stages = spec.build(config).stages
    print(f"{args.config}: valid `{config.pipeline}` pipeline with {len(stages)} stages")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Check the sweep (bad input exits 2 before any trial), run it on Ray Tune, write best.yaml, print the trials."""
    from orchestrator import tune
    from orchestrator.tracking import SweepTracker

    spec, config = load_pipeline_config(args.config, args.overrides)
    plan = tune.plan_sweep(apply_overrides(load_yaml(args.config), args.overrides), config, spec.build,
                           code_version(), output=args.output, source=args.config)
    exists = tune.can_resume(plan)
    if args.resume != exists:
        hint = (f"nothing to resume at {plan.experiment_path}; start it without --resume" if args.resume else
                f"a sweep already exists at {plan.experiment_path}; continue it with --resume, or pass --output DIR "
                "or set tune.name for a new one")
        raise ConfigError([f"tune: {hint}"], args.config)
    sweeps = SweepTracker(plan.tracking_uri, plan.experiment, strict=plan.strict_tracking)
    settings = config.tune.model_dump(mode="json")
    params = {f"tune.{k}": v for k, v in settings.items() if k != "space"}
    plan = tune.with_sweep_run(plan, sweeps.start(plan.name, plan.pipeline_name, params, yaml.safe_dump(settings, sort_keys=False)))
    try:
        rows, done = tune.run_sweep(plan, args.resume, sweeps)
    except BaseException:
        sweeps.finish("FAILED", {}, {}, [])
        raise
    best = tune.best_row(rows, config.tune.mode)
    files = write_sweep_outputs(Path(plan.output), rows, best, plan, args)
    best_tags = {f"best.{k}": v for k, v in (best.values if best else {}).items()}
    best_tags.update({"relay.best_trial": best.trial_id, "relay.best_run": best.run_id} if best else {})
    best_metric = {f"best/{config.tune.metric}": best.final()} if best and best.final() is not None else {}
    sweeps.finish("FINISHED" if done else "KILLED", best_tags, best_metric, files)
    print(f"\nSweep {plan.name}: {config.tune.metric} after each generation ({config.tune.mode}; * = best)")
    print(tune.trials_table(rows, list(config.tune.space), plan.generations, best))
    if not done:
        print(f"\nsweep interrupted; continue it with: relay tune {args.config} {' '.join(args.overrides)} --resume"
              + (f" --output {args.output}" if args.output else ""))
        return EXIT_FAILED
    print(f"\nBest config: {Path(plan.output) / 'best.yaml'}  (run it with: relay run {Path(plan.output) / 'best.yaml'})")
    return 0


def write_sweep_outputs(output: Path, rows: list[Any], best: Any, plan: Any, args: argparse.Namespace) -> list[str]:
    """trials.csv / trials.json always; best.yaml (base config + best values, no tune section) when there is a best."""
    from orchestrator import tune

    records = tune.trial_records(rows)
    output.mkdir(parents=True, exist_ok=True)
    (output / "trials.json").write_text(json.dumps(records, indent=2, default=str))
    columns = list(dict.fromkeys(key for record in records for key in record))
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in records]
    (output / "trials.csv").write_text("\n".join(lines) + "\n")
    files = [str(output / "trials.csv"), str(output / "trials.json")]
    if best is not None:
        data = tune.best_config(apply_overrides(load_yaml(args.config), args.overrides), best.values)
        (output / "best.yaml").write_text(f"# relay run {output / 'best.yaml'}\n# best trial {best.trial_id} of sweep "
                                          f"{plan.name}\n" + yaml.safe_dump(data, sort_keys=False))
        files.append(str(output / "best.yaml"))
    return files


def tracking_for(args: argparse.Namespace) -> tuple[str, str, dict[str, str]]:
    """Tracking URI, experiment and summary columns of a run (or of the workspace's defaults)."""
    from pipelines.registry import PIPELINES

    workspace = resolve_workspace(RunSettings(workspace=args.workspace))
    saved = run_dir(workspace, args.run_id) / "config.yaml" if args.run_id else None
    if saved is not None and saved.exists():
        spec, config = load_saved_config(saved)
        return tracking_uri(config.run, config.tracking), config.tracking.experiment, spec.summary
    settings = RunSettings(workspace=args.workspace)
    from orchestrator.config import TrackingSettings

    return tracking_uri(settings, TrackingSettings()), args.experiment, PIPELINES["crest"].summary


def cmd_generations(args: argparse.Namespace) -> int:
    uri, experiment, summary = tracking_for(args)
    print_generations(uri, experiment, args.run_id, summary)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from orchestrator import ui

    uri, experiment, _ = tracking_for(argparse.Namespace(workspace=args.workspace, run_id=None, experiment=args.experiment))
    url = ui.check(uri, experiment, args.port)
    print(f"MLflow UI: {url}  (Ctrl-C to stop)", flush=True)
    return ui.run_server(uri, args.port)


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate locally (bad input never reaches the cluster), then submit `relay run` as a Ray job."""
    from orchestrator import jobs

    spec, config = load_pipeline_config(args.config, args.overrides)
    needed = args.num_gpus if args.num_gpus is not None else max(
        (s.resources.num_gpus * s.resources.workers for s in spec.build(config).stages), default=0.0
    )
    job_id = jobs.submit_pipeline(
        args.address, args.config, args.overrides, str(Path.cwd()), submission_id=args.submission_id,
        num_gpus=needed, check_resources=not args.skip_resource_check,
    )
    print(job_id)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator import jobs

    print(jobs.job_status(args.address, args.job_id))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from orchestrator import jobs

    if args.follow:
        for chunk in jobs.follow_logs(args.address, args.job_id):
            print(chunk, end="", flush=True)
    else:
        print(jobs.job_logs(args.address, args.job_id), end="")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from orchestrator import jobs

    stopped = jobs.stop_job(args.address, args.job_id)
    print(f"{args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from orchestrator import jobs

    rows = jobs.list_jobs(args.address)
    for row in rows:
        print(f"{row['id']}  {row['status']:<10} {row.get('start_time') or '-':<25} {row['entrypoint']}")
    if not rows:
        print("no jobs on this cluster yet: submit one with `relay submit CONFIG --address ...`")
    return 0


# --- parser ----------------------------------------------------------------------------


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default: $RELAY_WORKSPACE or ./relay-workspace)")


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray dashboard address, e.g. http://HOST:8265 (default: $RAY_ADDRESS)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Multi-generation training pipelines on Ray, tracked in MLflow.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline file", description="relay run CONFIG [key=value ...]")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. crest.generations=2 train.steps=200")
    run.add_argument("--stop-after", help="stop after this stage (e.g. g00/train); finish later with relay resume")
    run.add_argument("--run-id", help="name the run (default: NAME-DATE-TIME-XXXX)")
    run.set_defaults(handler=cmd_run)

    resume = commands.add_parser("resume", help="finish a run; completed stages are skipped")
    resume.add_argument("run_id")
    resume.add_argument("--stop-after")
    add_workspace(resume)
    resume.set_defaults(handler=cmd_resume)

    validate = commands.add_parser("validate", help="check a pipeline file without running anything")
    validate.add_argument("config")
    validate.add_argument("overrides", nargs="*")
    validate.set_defaults(handler=cmd_validate)

    tune = commands.add_parser("tune", help="search a pipeline file's `tune:` space with Ray Tune",
                               description="relay tune CONFIG [key=value ...] [--output DIR] [--resume]")
    tune.add_argument("config")
    tune.add_argument("overrides", nargs="*", help="dotted overrides of the base config, e.g. train.steps=20")
    tune.add_argument("--output", help="sweep folder: best.yaml, trials.csv/json, Ray Tune state (default: WORKSPACE/tune/NAME)")
    tune.add_argument("--resume", action="store_true", help="continue an interrupted sweep; finished trials are not rerun")
    tune.set_defaults(handler=cmd_tune)

    generations = commands.add_parser("generations", help="per-generation table of a run (default: latest)")
    generations.add_argument("run_id", nargs="?")
    generations.add_argument("--experiment", default="relay")
    add_workspace(generations)
    generations.set_defaults(handler=cmd_generations)

    ui = commands.add_parser("ui", help="start an MLflow UI on 127.0.0.1 for the workspace")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--experiment", default="relay")
    add_workspace(ui)
    ui.set_defaults(handler=cmd_ui)

    submit = commands.add_parser("submit", help="run a pipeline file on a Ray cluster as a Ray job")
    submit.add_argument("config")
    submit.add_argument("overrides", nargs="*")
    add_address(submit)
    submit.add_argument("--submission-id", help="job id (default: chosen by Ray); duplicates are rejected")
    submit.add_argument("--num-gpus", type=float, help="GPUs the stages need at once (default: from the config's resources)")
    submit.add_argument("--skip-resource-check", action="store_true", help="do not compare --num-gpus with the cluster (autoscaling clusters)")
    submit.set_defaults(handler=cmd_submit)

    for name, handler, text in (("status", cmd_status, "a job's status"), ("stop", cmd_stop, "stop a running job")):
        command = commands.add_parser(name, help=text)
        command.add_argument("job_id")
        add_address(command)
        command.set_defaults(handler=handler)

    logs = commands.add_parser("logs", help="a job's driver log")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    add_address(logs)
    logs.set_defaults(handler=cmd_logs)

    listing = commands.add_parser("jobs", help="list the cluster's jobs")
    add_address(listing)
    listing.set_defaults(handler=cmd_jobs)
    return parser


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Let `key=value` overrides stand anywhere, also after options such as --stop-after."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv`` None means this process's own command line (the `relay` script).

    Then `relay run` / `relay resume` end the process here once they return: they have
    already closed MLflow (every write landed) and stopped Ray, and tearing down the
    interpreter (collecting torch's, Ray's and MLflow's module graphs) cost 3-5 s more.
    """
    args = parse_arguments(build_parser(), argv)
    configure_logging(args.verbose)
    code = _dispatch(args)
    if argv is None and args.handler in (cmd_run, cmd_resume):
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process without interpreter teardown, after flushing what it printed and logged."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    """The command's exit code; bad input and failures become messages, not tracebacks."""
    try:
        return args.handler(args)
    except (ConfigError, PipelineError) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StageError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RelayError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
