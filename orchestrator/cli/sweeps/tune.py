"""`relay tune`: check a sweep (bad input exits 2 before any trial), run it on Ray Tune, write its results."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from orchestrator.cli import temporary
from orchestrator.cli.code_versions import log_code_versions, pipeline_code_versions
from orchestrator.cli.common import add_cluster_address, add_location_overrides, cluster_address, pipelines_of
from orchestrator.cli.pipeline_files import load_pipeline_file, overridden
from orchestrator.cli.preflight import folder_problem
from orchestrator.cli.run import cluster_fit, cluster_join, run_locations
from orchestrator.cli.sweeps.sweep_folder import (
    check_output_free,
    check_resume,
    check_same_stores,
    check_same_sweep,
    driven_here,
    recorded_address,
    save_sweep_config,
    save_sweep_stores,
)
from orchestrator.cli.sweeps.sweep_names import check_name_free
from orchestrator.cli.sweeps.sweep_results import (
    best_notes,
    failed_way_on,
    interrupted_before_trials,
    interrupted_line,
    print_ending,
    sweep_status,
    terminated,
    unwritten_results,
    write_sweep_outputs,
)
from orchestrator.config import ARTIFACT_URI_ENV, TRACKING_URI_ENV, RunSettings
from orchestrator.engine.signals import Terminated, terminated_by_signal
from orchestrator.errors import ConfigError, RelayError
from orchestrator.tracking.sweeps import SweepTracker
from orchestrator.tune.plan import SweepPlan, plan_sweep, with_sweep_run
from orchestrator.tune.space import total_trials
from orchestrator.tune.trial_fit import space_fit_problems, trial_fit_problem


def cmd_tune(args: argparse.Namespace) -> int:
    """Check the sweep, run it on Ray Tune, write best.yaml, print the trials."""
    spec, config, data = load_pipeline_file(args.config, args.overrides, pipelines_of(args))  # data: trials' base
    problem = folder_problem(args.output, "--output") if args.output else None
    if problem:
        raise ConfigError([problem], "the command line")
    pipeline = spec.build(config)
    plan = _planned_sweep(args, spec, config, data, pipeline)
    held, early = _held_early(plan)
    with held:  # a second driver of the sweep, or a `relay delete` of it, meanwhile is refused
        plan, address = _placed_sweep(args, plan, spec, config, pipeline)
        check_name_free(args, plan)
        from orchestrator.tune import sweep  # Ray Tune (seconds to import): only once the sweep checks out

        _check_sweep_folder(args, plan, data, sweep)
        sweep.check_sendable(plan)
        joined = cluster_join.address_to_record(address, ray_settings(config.run))
        args = _with_address(args, joined if joined is not None else address)
        if not early:  # a new sweep's folder: made and held once the sweep checked out
            held.enter_context(driven_here(Path(plan.output), plan.name))
        log_code_versions(pipeline)  # the sweep is accepted: bad input above printed only its message
        sweeps = SweepTracker(plan.tracking_uri, plan.tracking.experiment, strict=plan.tracking.strict)
        plan = _started_sweep(args, plan, sweeps, config.pipeline)
        if not args.resume:
            save_sweep_config(Path(plan.output), data)
            save_sweep_stores(Path(plan.output), plan, joined)
        rows, done = _searched(args, plan, sweeps, sweep)
        return _ended(args, plan, config, sweeps, rows, done)


def _held_early(plan: SweepPlan) -> tuple[contextlib.ExitStack, bool]:
    """The sweep's folder held (``driven_here``) from the first moment its place is known, when it exists already (a
    `--resume`, a start after a cut-off one); and whether it is held. A new sweep's folder is made later, once the
    sweep checked out (nothing is written for bad input).

    Why: a `relay delete SWEEP` in the seconds a `relay tune --resume` spent on its checks found the folder free,
    removed it with the sweep's trials and MLflow run, and the resume went on into a sweep that was gone (Ray Tune
    failed to open its tuner.pkl). Held from here, the one that comes second is refused, with nothing touched.
    """
    held = contextlib.ExitStack()
    output = Path(plan.output)
    if not output.is_dir():
        return held, False
    held.enter_context(driven_here(output, plan.name))  # raised: nothing was entered, nothing to let go
    return held, True


def _planned_sweep(
    args: argparse.Namespace, spec: Any, config: Any, data: Mapping[str, Any], pipeline: Any
) -> SweepPlan:
    """Every key of the sweep checked (``plan_sweep``); a problem is named by the override that set its key."""
    try:
        return plan_sweep(
            data,
            config,
            spec.build,
            pipeline_code_versions(pipeline),
            output=args.output,
            source=args.config,
            pyfunc_loader=spec.pyfunc_loader,
        )
    except ConfigError as exc:  # as the config's own problems: each names the override that set its key
        raise overridden(exc.problems, args.overrides, args.config) from exc


def _placed_sweep(
    args: argparse.Namespace, plan: SweepPlan, spec: Any, config: Any, pipeline: Any
) -> tuple[SweepPlan, str | None]:
    """The plan on the Ray the sweep runs on, and that cluster's address (None: a new local Ray).

    Refused (exit 2) before anything is written: a cluster that cannot be joined, stores that would
    not outlive it or do not answer, a trial that could never start there. A `--resume` without
    --address joins the cluster the sweep's first start joined (``recorded_address``).
    """
    address = cluster_address(args.address)
    on_ray = ray_settings(config.run)
    if args.resume and address is None and not run_locations.in_ray_job():
        address = recorded_address(plan)
    fits = cluster_fit.check_cluster(address, on_ray, pipeline, args.config, sweep=True)  # the cluster first
    check_locations(plan, on_ray, address, args.config)
    if address is not None:
        plan = dataclasses.replace(plan, ray_address=address)
    problems = trial_size_problems(plan.base, config, spec.build, pipeline, fits, local_ray_cpus(address, on_ray))
    if problems:
        raise overridden(problems, args.overrides, args.config)
    return plan, address


def _check_sweep_folder(args: argparse.Namespace, plan: SweepPlan, data: Mapping[str, Any], sweep: ModuleType) -> None:
    """The sweep's folder takes this start or `--resume` (``sweep_folder``), as Ray Tune's state there says (``sweep``)."""
    exists = sweep.can_resume(plan)
    check_resume(args, plan, exists)
    check_output_free(args, plan, exists, sweep.sweeps_in(Path(plan.output)))
    check_same_sweep(args, Path(plan.output), data)
    check_same_stores(args, plan)


def _started_sweep(args: argparse.Namespace, plan: SweepPlan, sweeps: SweepTracker, pipeline_kind: str) -> SweepPlan:
    """The plan with the sweep's own MLflow run, started (or taken up again on `--resume`), its settings as params."""
    settings = plan.settings.model_dump(mode="json")  # the seed the sweep uses, also when `tune.seed` is left out
    params = {f"tune.{k}": v for k, v in settings.items() if k != "space"}
    return with_sweep_run(
        plan,
        sweeps.start(
            plan.name,
            plan.pipeline_name,
            params,
            yaml.safe_dump(settings, sort_keys=False),
            output=plan.output,
            resume=args.resume,
            pipeline_kind=pipeline_kind,
        ),
    )


def _searched(
    args: argparse.Namespace, plan: SweepPlan, sweeps: SweepTracker, sweep: ModuleType
) -> tuple[list[Any], bool]:
    """Ray Tune's trials and whether the sweep ended; on Ctrl-C, SIGTERM or an error, the sweep's run is closed
    (KILLED or FAILED) and the way on said before it propagates."""
    try:
        return sweep.run_sweep(plan, args.resume, sweeps)
    except KeyboardInterrupt:
        interrupted_before_trials(args, plan, sweep.can_resume(plan))
        sweeps.finish("KILLED", {}, {}, [])
        raise
    except SystemExit:  # SIGTERM (`relay stop` of a sweep's job, `kill`): Ray's handler raises it inside the loop
        terminated(args, plan, sweeps)
        if terminated_by_signal():  # exit 143 as `relay run` ends: inside a Ray call it came out as SystemExit(1)
            raise Terminated() from None
        raise
    except sweep.SweepFailed as exc:
        sweeps.finish("FAILED", {}, {}, [])
        raise RelayError(f"{exc}; {failed_way_on(args, plan, exc.resumable)}") from exc
    except BaseException:
        sweeps.finish("FAILED", {}, {}, [])
        raise


def _ended(
    args: argparse.Namespace,
    plan: SweepPlan,
    config: Any,
    sweeps: SweepTracker,
    rows: list[Any],
    done: bool,
) -> int:
    """The sweep's results written (``write_sweep_outputs``) and tracked, its table printed; the exit code."""
    from orchestrator.tune.trials_table import best_row, tied_with, trial_records, trials_table  # beside Ray Tune

    best = best_row(rows, config.tune.mode)
    tied = [row.trial_id for row in tied_with(rows, best)] if best else []
    unfinished = None if done else interrupted_line(args, rows, total_trials(plan.settings))
    try:
        files = write_sweep_outputs(Path(plan.output), trial_records(rows), best, plan, tied, unfinished)
    except OSError as exc:
        sweeps.finish("FAILED", {}, {}, [])
        raise RelayError(unwritten_results(args, plan, exc)) from exc
    best_tags = {f"best.{k}": v for k, v in (best.values if best else {}).items()}
    best_tags.update({"relay.best_trial": best.trial_id, "relay.best_run": best.run_id} if best else {})
    best_metric = {f"best/{config.tune.metric}": best.final()} if best and best.final() is not None else {}
    sweeps.finish(sweep_status(done, best is not None), best_tags, best_metric, files)
    print(f"\nSweep {plan.name}: {config.tune.metric} after each generation ({config.tune.mode}; * = best)")
    print(trials_table(rows, list(config.tune.space), plan.generations, best))
    for line in best_notes(plan) if best is not None else []:
        print(line)
    return print_ending(args, plan, done, best is not None)


def local_ray_cpus(address: str | None, settings: RunSettings) -> float | None:
    """The CPUs of the local Ray instance the sweep starts (``run.num_cpus``, else this machine's), None when it joins
    a cluster, which may add nodes."""
    if not cluster_join.starts_local_ray(address, settings):
        return None
    return settings.num_cpus or os.cpu_count() or 1


def trial_size_problems(
    base: Mapping[str, Any],
    config: Any,
    build: Any,
    pipeline: Any,
    fits: cluster_fit.FitCheck,
    local_cpus: float | None,
) -> list[str]:
    """Why some trial of the sweep could never start, one line each: `relay tune` refuses these, `relay validate`
    lists them.

    The base config's stages passed ``fits`` (``cluster_fit.check_cluster``); a trial needs more:
    on a local Ray its driver beside its widest stage (``trial_fit_problem``), and wherever it runs,
    the stages of each `resources.*` value its space can give (``space_fit_problems``).
    """
    trial_cpus = config.tune.trial_cpus

    def trial_fits(candidate: Any) -> list[str]:
        problem = None if local_cpus is None else trial_fit_problem(candidate, trial_cpus, local_cpus)
        return [*fits(candidate), *([problem] if problem else [])]

    problem = None if local_cpus is None else trial_fit_problem(pipeline, trial_cpus, local_cpus)
    spaced = space_fit_problems(base, config.tune.space, type(config), build, trial_fits)
    return [*([problem] if problem else []), *spaced]


def local_trial_size_problems(base: Mapping[str, Any], config: Any, build: Any, pipeline: Any) -> list[str]:
    """What `relay tune` would refuse about the size of its trials on the local Ray it starts (``trial_size_problems``),
    for `relay validate`; nothing where the sweep would join a cluster, whose nodes validate does not read, nor
    where the config's own stages do not fit: `relay tune` refuses those first, with `relay run`'s lines alone."""
    on_ray = ray_settings(config.run)
    cpus = local_ray_cpus(None, on_ray)
    fits = cluster_fit.fit_check(None, on_ray)
    if cpus is None or fits(pipeline):
        return []
    return trial_size_problems(base, config, build, pipeline, fits, cpus)


def ray_settings(settings: RunSettings) -> RunSettings:
    """``settings`` as a sweep runs them: on Ray, whatever ``run.executor`` says (a trial's stages run on Ray).

    Why: the checks of the cluster a run joins pass over a ``run.executor=local`` run, which starts no Ray;
    given that setting, a sweep skipped them and hung in ray.init retrying an address where nothing answered.
    """
    return settings.model_copy(update={"executor": "ray"})


def check_locations(plan: SweepPlan, settings: RunSettings, address: str | None, source: str) -> None:
    """The sweep's stores must be reachable, and on a cluster outlive it, as for `relay run` (pipeline.checked_locations).

    Trials joining a cluster run stages on its other nodes, which write into the same stores:
    a workspace under /tmp would be node-local and lost with the cluster.
    """
    locations = run_locations.Locations(
        plan.store_uri,
        plan.tracking_uri,
        run_locations.env_key(settings.artifact_uri, ARTIFACT_URI_ENV, "run.artifact_uri"),
        run_locations.env_key(plan.tracking.uri, TRACKING_URI_ENV, "tracking.uri"),
        experiment=plan.tracking.experiment,
    )
    if run_locations.in_ray_job() or cluster_join.joins_cluster(address, settings):
        problems = run_locations.durability_problems(locations)
        why = temporary.impermanence(str(Path(plan.output).absolute()))
        if why is not None:  # best.yaml, the trials and Ray Tune's state for --resume
            problems.append(f"--output: the sweep folder {plan.output} would be {why}; pass --output on shared storage")
        if problems:
            raise ConfigError(problems, source)
    run_locations.check_reachable(locations, source)


def _with_address(args: argparse.Namespace, address: str | None) -> argparse.Namespace:
    """``args`` with ``--address`` set to where the sweep runs: the cluster it joined (also through RAY_ADDRESS or its
    record on --resume), or `local` when asked for; the lines that say how to go on repeat it (``_again``)."""
    return argparse.Namespace(**{**vars(args), "address": address})


def register(commands: Any) -> None:
    tune = commands.add_parser(
        "tune",
        help="search a pipeline file's `tune:` space with Ray Tune",
        description="relay tune CONFIG [key=value ...] [--output DIR] [--resume]",
    )
    tune.add_argument("config", help="the pipeline file with a `tune:` section")
    tune.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides of the base config, e.g. train.steps=20"
    )
    tune.add_argument(
        "--output", help="sweep folder: best.yaml, trials.csv/json, Ray Tune state (default: WORKSPACE/tune/NAME)"
    )
    tune.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep on the cluster it joined; trials Ray Tune recorded as finished are not rerun",
    )
    add_cluster_address(tune)
    add_location_overrides(tune)
    tune.set_defaults(handler=cmd_tune)
