"""`relay run`, `relay resume`, `relay validate`: one pipeline run, end to end.

The commands check their input (config, data, folders, store, run id, --stop-after) and hand a
``PreparedRun`` to ``execution``, which runs it; `relay resume` first checks what it may take over
(``resume_checks``, ``resume_guard``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.cli.common import (
    add_artifact_uri,
    add_cluster_address,
    add_location_overrides,
    add_workspace,
    cluster_address,
    new_run_id,
    pipelines_of,
    store_of,
)
from orchestrator.cli.pipeline_files import load_pipeline_config, overridden, overrides_origin
from orchestrator.cli.preflight import check_new_run, check_run_id, check_stop_after
from orchestrator.cli.run import cluster_fit, cluster_join, resume_guard, run_locations
from orchestrator.cli.run.execution import PreparedRun, RunEnd, execute, joined_first, prepare_run
from orchestrator.cli.run.resume_checks import (
    check_data_unchanged,
    check_not_a_trial,
    check_not_moved,
    check_resume_stop_after,
    resume_address,
)
from orchestrator.cli.run.run_record import read_run_record, rerun_on_resume, save_run_record, with_locations
from orchestrator.config import apply_overrides, load_yaml, tracking_uri
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, record_path
from orchestrator.engine.signals import EXIT_TERMINATED, terminated_by_signal
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec

log = logging.getLogger("relay")


def checked_locations(config: Any, source: str | None, address: str | None = None) -> Any:
    """``config`` with its stores resolved and written in, once they are checked (exit 2 before anything is written).

    On a cluster (inside a Ray job, or joining one as its driver: ``address``, ``run.ray_address``,
    RAY_ADDRESS) the stores must also outlive the cluster and be seen by every node: stages on
    other nodes write there too (run_locations.check_durable).
    """
    locations = run_locations.resolved_locations(config)
    if run_locations.in_ray_job() or cluster_join.joins_cluster(address, config.run):
        run_locations.check_durable(locations, source)
    run_locations.check_reachable(locations, source)
    return with_locations(config, locations.store, locations.tracking)


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """`--rerun-from STAGE` / `--no-cache`, shared by `relay run` and `relay submit` (which forwards them)."""
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--rerun-from",
        metavar="STAGE",
        help="rerun this stage (e.g. g01/train) and everything downstream of it even if cached; reuse the rest",
    )
    cache.add_argument("--no-cache", action="store_true", help="rerun every stage; cached outputs are not read")


def cache_flags(args: argparse.Namespace) -> list[str]:
    """The cache flags of ``args`` as `relay run` arguments, for the job `relay submit` starts."""
    if args.no_cache:
        return ["--no-cache"]
    return ["--rerun-from", args.rerun_from] if args.rerun_from else []


def cmd_run(args: argparse.Namespace) -> int:
    """`relay run`: ``start_run``, exit 0 (a failure raises; SIGTERM: 143, ``ended_by_sigterm``)."""
    with ended_by_sigterm() as ended:
        start_run(args)
    return ended.code


@dataclass
class CommandEnd:
    """The exit code of a `relay run` or `relay resume` that returned or was stopped by SIGTERM."""

    code: int = 0


@contextlib.contextmanager
def ended_by_sigterm() -> Iterator[CommandEnd]:
    """A SIGTERM that stopped the block (``terminate_as_interrupt``) gives exit 143, the run recorded INTERRUPTED.

    Why: the SystemExit it raises (Ray's SystemExit(1) when it landed inside a Ray call) went out
    of the CLI, which exited 1, or 134 once the core worker's C++ handler had seen the signal, after
    tearing Ray, torch and MLflow down. Caught here, the CLI ends the process at once with 143, as
    after any run (``ends_process``).
    """
    ended = CommandEnd()
    try:
        yield ended
    except SystemExit:
        if not terminated_by_signal():
            raise
        ended.code = EXIT_TERMINATED


def start_run(args: argparse.Namespace) -> RunEnd:
    """Check everything (config, data, folders, store, run id, --stop-after), then write the run record and run."""
    origin = overrides_origin(args)
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args), origin=origin)
    address = cluster_address(args.address)
    check_executor_takes_address(args, config, address)
    cluster_fit.check_cluster(address, config.run, spec.build(config), args.config)
    config = checked_locations(config, args.config, address)
    run_id = new_run_id(config.name) if args.run_id is None else args.run_id
    run = prepare_run(spec, config, run_id, args.stop_after, address, args.rerun_from, args.no_cache)
    check_new_run(run.store, run_id, config.run if args.run_id is not None else None)  # a sweep's name: refused
    run = joined_first(run)
    joined = cluster_join.address_to_record(address, config.run)
    rerun = f", {len(run.rerun)} rerun on request" if run.rerun else ""
    log.info("run %s: %d stages%s", run.run_id, len(run.pipeline.stages), rerun)
    # written by ``execute`` once a Ctrl-C from then on is recorded and said (``resume_hint_until_the_stages_run``)
    record = functools.partial(
        save_run_record, run.store, run.run_id, config, args.config, args.overrides, run.rerun, joined
    )
    return execute(run, resume=False, record=record)


def check_executor_takes_address(args: argparse.Namespace, config: Any, address: str | None) -> None:
    """Refuse (exit 2) a new run of ``run.executor=local`` given a cluster address (``--address``, ``run.ray_address``).

    Each problem names the override that set the executor or the address, as the config's own do;
    one about ``--address`` alone is the command line's (``cluster_join.local_executor_address_problems``).
    """
    problems = cluster_join.local_executor_address_problems(address, config.run)
    if not problems:
        return
    error = overridden(problems, args.overrides, args.config, overrides_origin(args))
    if all(problem.startswith("--address") for problem in problems):
        error = ConfigError(error.problems, "the command line")
    raise error


def cmd_resume(args: argparse.Namespace) -> int:
    """`relay resume`: ``resume_run``, exit 0 (a failure raises; SIGTERM: 143, ``ended_by_sigterm``)."""
    with ended_by_sigterm() as ended:
        resume_run(args)
    return ended.code


def resume_run(args: argparse.Namespace) -> RunEnd:
    """Finish a run from its record in the artifact store; the store it was found in is where it writes.

    It runs on the cluster the run joined (its record's, ``resume_address``) unless `--address` names another.
    A run whose driver may still run it is refused (``resume_guard.check_not_running``), and the run is
    claimed before Ray starts (``resume_guard.claimed``) and locked until the resume ends (``resume_guard.locked``),
    so that a second resume meanwhile is refused too.
    """
    check_run_id(args.run_id)
    address = cluster_address(args.address)
    store = store_of(args)
    check_not_a_trial(args, store)
    spec, config = read_run_record(store, args.run_id, pipelines_of(args))
    cluster_join.check_resume_address(address, config.run, args.run_id)
    address = resume_address(address, store, args.run_id, config.run)
    if args.stop_after is not None:  # a stage the pipeline lacks is named as such, finished run or not
        check_stop_after(spec.build(config), args.stop_after)
    resume_guard.check_not_running(store, args.run_id, getattr(args, "driver_gone", False))
    check_resume_stop_after(store, args.run_id, args.stop_after)  # reads the ledger's status, which the claim sets
    check_not_moved(config, store.uri, args.run_id)
    with resume_guard.locked(store, args.run_id):  # until the resume ends: a second resume meanwhile is refused
        with resume_guard.claimed(store, args.run_id):  # before anything slow; put back if what follows refuses
            run = _prepared_resume(args, spec, config, store, address)
        return execute(run, resume=True)


def _prepared_resume(
    args: argparse.Namespace, spec: PipelineSpec, config: Any, store: ArtifactStore, address: str | None
) -> PreparedRun:
    """The checks and preparation a claimed resume makes before it executes (Ray joined first where it must be)."""
    check_data_unchanged(spec, config, args.run_id, store.location(record_path(args.run_id, CONFIG_FILE)))
    config = checked_locations(
        with_locations(config, store.uri, tracking_uri(config.run, config.tracking)), None, address
    )
    run = prepare_run(spec, config, args.run_id, args.stop_after, address)
    run = dataclasses.replace(run, rerun=rerun_on_resume(store, args.run_id))  # what --no-cache had not reached
    cluster_fit.check_cluster(address, config.run, run.pipeline)
    return joined_first(run)


def cmd_validate(args: argparse.Namespace) -> int:
    """The checks `relay run` makes before writing (and, for a file with `tune:`, those of `relay tune`)."""
    spec, config = load_pipeline_config(args.config, args.overrides, pipelines_of(args))
    check_executor_takes_address(args, config, None)
    pipeline = spec.build(config)
    problems = cluster_fit.local_ray_fit_problems(None, config.run, pipeline)  # `relay run`'s own lines
    if getattr(config, "tune", None) is not None:
        problems += _sweep_problems(args, spec, config, pipeline)
    if problems:
        raise ConfigError(problems, args.config)
    print(f"{args.config}: valid `{config.pipeline}` pipeline with {len(pipeline.stages)} stages")
    return 0


def _sweep_problems(args: argparse.Namespace, spec: Any, config: Any, pipeline: Pipeline) -> list[str]:
    """What `relay tune` would refuse in a file with `tune:`: its sweep's checks, then the size of its trials,
    each said to be the sweep's (``for_the_trials``)."""
    from orchestrator.cli.sweeps.tune import local_trial_size_problems
    from orchestrator.tune.sweep_checks import repeated_grid_note, sweep_check
    from orchestrator.tune.trial_work import inert_keys

    data = apply_overrides(load_yaml(args.config), args.overrides)
    base = {key: value for key, value in data.items() if key != "tune"}
    ranked_on, sweep_problems = sweep_check(base, config, config.tune, spec.build)
    swept = overridden(sweep_problems, args.overrides, args.config)
    sized = overridden(local_trial_size_problems(base, config, spec.build, pipeline), args.overrides, args.config)
    for line in inert_keys(base, config.tune.space, type(config), spec.build, ranked_on):  # as `relay tune` warns
        log.warning(line)
    if note := repeated_grid_note(config.tune):
        log.warning(note)
    lone = _lone_population_warning(config, pipeline)
    if lone:
        log.warning(lone)
    return [*swept.problems, *(for_the_trials(problem, args.config, args.overrides) for problem in sized.problems)]


def _lone_population_warning(config: Any, pipeline: Pipeline) -> str | None:
    """What `relay tune` warns of a PBT / PB2 sweep that would run one trial at a time on the local Ray it starts,
    the same line (``sweep.lone_population_warning``), its trials at once counted as the sweep counts them
    (``fit_concurrency``); None where the sweep joins a cluster, whose nodes validate does not read, or where
    a stage asks for GPUs this machine cannot count.

    Why: `relay validate FILE tune.scheduler=pbt` passed silently on 2 cores, where `relay tune` warned that
    the sweep would perturb nothing.
    """
    from orchestrator.cli.sweeps.tune import local_ray_cpus, ray_settings
    from orchestrator.engine.fit import local_gpus

    settings = config.tune
    cpus = local_ray_cpus(None, ray_settings(config.run))
    if not settings.population_based or cpus is None:  # Ray Tune is imported for a population only
        return None
    gpus = local_gpus()
    if gpus is None and any(stage.resources.num_gpus for stage in pipeline.stages):
        return None
    from orchestrator.tune.plan import fit_concurrency
    from orchestrator.tune.space import total_trials
    from orchestrator.tune.sweep import lone_population_warning

    node = {"CPU": float(cpus), "GPU": float(gpus or 0)}
    trials = total_trials(settings)
    concurrency = fit_concurrency(node, pipeline, settings.trial_cpus, settings.max_concurrent_trials, trials, [node])
    return lone_population_warning(settings, concurrency, trials, float(cpus))


def for_the_trials(problem: str, path: str, overrides: Sequence[str] = ()) -> str:
    """A trial-size problem of `relay validate`, with what it is about: the sweep's trials, not `relay run`.

    Why: `relay validate smoke.yaml resources.train.workers=2` said `resources.train: a trial needs 2.1 CPUs ...`
    and exited 2, while `relay run smoke.yaml resources.train.workers=2` ran it: a trial's 0.1-CPU driver sits
    beside its stages only in `relay tune`, and `relay run` runs the base config once, without one. Said at the
    end, after the override that caused it, so that the line keeps the heading `relay tune` prints. The `relay
    run` it names carries the overrides that are not the sweep's (``overrides``): pasted, it runs this config.
    """
    command = shlex.join(["relay", "run", path, *(item for item in overrides if not item.startswith("tune."))])
    return (
        f"{problem}; this is for `relay tune` (each trial of the sweep): `{command}` runs the base config once and is "
        "not affected (to validate that alone, leave out the tune section: tune=null)"
    )


def register(commands: Any) -> None:
    """The run/resume/validate subcommands; run and resume end their process when done (``ends_process``)."""
    run = commands.add_parser("run", help="run a pipeline file", description="relay run CONFIG [key=value ...]")
    run.add_argument("config", help="the pipeline file (YAML), e.g. pipelines/configs/smoke.yaml")
    run.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides, e.g. crest.generations=2 train.steps=200"
    )
    run.add_argument(
        "--stop-after",
        help="run this stage (e.g. g00/train) and the stages it needs, then stop; finish later with relay resume",
    )
    run.add_argument("--run-id", help="name the run (default: NAME-DATE-TIME-XXXX)")
    add_location_overrides(run)
    add_cluster_address(run)
    add_cache_flags(run)
    run.set_defaults(handler=cmd_run, ends_process=True)

    about = "finish a run; completed stages are skipped (on a cluster: relay submit --resume RUN_ID)"
    resume = commands.add_parser("resume", help=about, description=about)
    resume.add_argument("run_id", help="the run to finish (`relay runs` lists them)")
    resume.add_argument(
        "--stop-after",
        help="go only as far as this stage (e.g. g01/train) and the stages it needs; finish later with relay resume",
    )
    add_workspace(resume)
    add_artifact_uri(resume)
    add_cluster_address(resume, resume=True)
    resume.add_argument(
        "--driver-gone",
        action="store_true",
        help="resume a run that says RUNNING with its driver on another machine, known to be gone (its machine "
        "lost, its process killed); without it such a run is refused, as its driver cannot be checked from here",
    )
    resume.set_defaults(handler=cmd_resume, ends_process=True)

    about = "check a pipeline file without running anything"
    validate = commands.add_parser("validate", help=about, description=about)
    validate.add_argument("config", help="the pipeline file (YAML), e.g. pipelines/configs/smoke.yaml")
    validate.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides to check with it, e.g. train.steps=200"
    )
    add_location_overrides(validate)
    validate.set_defaults(handler=cmd_validate)
