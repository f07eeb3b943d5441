"""`relay tune`: check a sweep (bad input exits 2 before any trial), run it on Ray Tune, write its results."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli import cluster_fit, cluster_join, run_locations, temporary
from orchestrator.cli.code_versions import log_code_versions, pipeline_code_versions
from orchestrator.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, add_cluster_address, cluster_address, pipelines_of
from orchestrator.cli.pipeline_files import load_pipeline_file, overridden
from orchestrator.cli.preflight import folder_problem
from orchestrator.config import ARTIFACT_URI_ENV, TRACKING_URI_ENV, WORKSPACE_ENV, RunSettings
from orchestrator.engine.ledger import JOB_ADDRESS_ENV
from orchestrator.errors import ConfigError
from orchestrator.tracking.sweeps import SweepTracker
from orchestrator.tune.plan import SweepPlan, plan_sweep, with_sweep_run
from orchestrator.tune.space import best_config, total_trials
from orchestrator.tune.trial_fit import space_fit_problems, trial_fit_problem

log = logging.getLogger(__name__)
SUBMITTED_RESUME_ENV = "RELAY_SWEEP_RESUME_COMMAND"  # set by `relay submit --tune`: its job's way on


def cmd_tune(args: argparse.Namespace) -> int:
    """Check the sweep, run it on Ray Tune, write best.yaml, print the trials."""
    spec, config, data = load_pipeline_file(args.config, args.overrides, pipelines_of(args))  # data: trials' base
    problem = folder_problem(args.output, "--output") if args.output else None
    if problem:
        raise ConfigError([problem], "the command line")
    pipeline = spec.build(config)
    try:
        plan = plan_sweep(
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
    from orchestrator.tune import sweep  # Ray Tune (seconds to import): only once the sweep checks out
    from orchestrator.tune.trials_table import best_row, tied_with, trial_records, trials_table

    exists = sweep.can_resume(plan)
    check_resume(args, plan, exists)
    check_output_free(args, plan, exists, sweep.sweeps_in(Path(plan.output)))
    _check_same_sweep(args, Path(plan.output), data)
    _check_same_stores(args, plan)
    joined = cluster_join.address_to_record(address, on_ray)
    args = _with_address(args, joined if joined is not None else address)
    log_code_versions(pipeline)  # the sweep is accepted: bad input above printed only its message
    sweeps = SweepTracker(plan.tracking_uri, plan.tracking.experiment, strict=plan.tracking.strict)
    settings = plan.settings.model_dump(mode="json")  # the seed the sweep uses, also when `tune.seed` is left out
    params = {f"tune.{k}": v for k, v in settings.items() if k != "space"}
    plan = with_sweep_run(
        plan,
        sweeps.start(
            plan.name,
            plan.pipeline_name,
            params,
            yaml.safe_dump(settings, sort_keys=False),
            output=plan.output,
            resume=args.resume,
            pipeline_kind=config.pipeline,
        ),
    )
    if not args.resume:
        _save_sweep_config(Path(plan.output), data)
        _save_sweep_stores(Path(plan.output), plan, joined)
    try:
        rows, done = sweep.run_sweep(plan, args.resume, sweeps)
    except KeyboardInterrupt:
        _interrupted_before_trials(args, plan, sweep.can_resume(plan))
        sweeps.finish("KILLED", {}, {}, [])
        raise
    except SystemExit:  # SIGTERM (`relay stop` of a sweep's job, `kill`): Ray's handler raises it inside the loop
        _terminated(args, plan, sweeps)
        raise
    except BaseException:
        sweeps.finish("FAILED", {}, {}, [])
        raise
    best = best_row(rows, config.tune.mode)
    tied = [row.trial_id for row in tied_with(rows, best)] if best else []
    unfinished = None if done else interrupted_line(args, rows, total_trials(plan.settings))
    files = write_sweep_outputs(Path(plan.output), trial_records(rows), best, plan, tied, unfinished)
    best_tags = {f"best.{k}": v for k, v in (best.values if best else {}).items()}
    best_tags.update({"relay.best_trial": best.trial_id, "relay.best_run": best.run_id} if best else {})
    best_metric = {f"best/{config.tune.metric}": best.final()} if best and best.final() is not None else {}
    sweeps.finish(sweep_status(done, best is not None), best_tags, best_metric, files)
    print(f"\nSweep {plan.name}: {config.tune.metric} after each generation ({config.tune.mode}; * = best)")
    print(trials_table(rows, list(config.tune.space), plan.generations, best))
    for line in best_notes(plan) if best is not None else []:
        print(line)
    return _print_ending(args, plan, done, best is not None)


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


TIE_RULE = "a tie goes to the trial Ray Tune numbered first"  # its trial number: trials that start together may start in another order


def best_notes(plan: SweepPlan) -> list[str]:
    """Lines under the table: how Relay picks its best trial (Ray Tune's status box may name another), and for PBT
    what best.yaml can and cannot reproduce."""
    notes = [
        f"* = Relay's best: among the trials that reached the furthest generation, the best final "
        f'{plan.settings.metric} ({plan.settings.mode}); Ray Tune\'s "best trial" above compares last reported '
        "values whatever the generation, so it may name a trial stopped early; the trials are listed in Ray Tune's "
        f"trial order (their number), and {TIE_RULE}"
    ]
    note = pbt_note(plan)
    if note:
        notes.append(note)
    return notes


def pbt_note(plan: SweepPlan) -> str | None:
    """Under PBT a trial's values change between generations; best.yaml can hold only one set."""
    if plan.settings.scheduler not in ("pbt", "pb2"):
        return None
    return (
        f"best.yaml carries the best trial's final values only; {plan.settings.scheduler} may have changed them "
        "between generations (an exploit copies a better trial and perturbs its values), and a run of best.yaml "
        "trains every generation with the final ones, so its score can differ from the trial's"
    )


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


def _interrupted_before_trials(args: argparse.Namespace, plan: SweepPlan, resumable: bool) -> None:
    """Ctrl-C before Ray Tune saved any state (while Ray started): say how to go on, and leave a folder that allows it.

    A new sweep's folder then holds only the sweep-config.yaml written here, which neither
    `--resume` (no state) nor a new start (a folder that is not empty) would take.
    """
    if resumable:
        print(f"\nsweep interrupted; continue it with: {resume_command(args)}", flush=True)
        return
    if not args.resume:
        (Path(plan.output) / SWEEP_CONFIG).unlink(missing_ok=True)
        (Path(plan.output) / SWEEP_STORES).unlink(missing_ok=True)
    print(f"\nsweep interrupted before any trial started; start it again with: {_again(args)}", flush=True)


def _terminated(args: argparse.Namespace, plan: SweepPlan, sweeps: SweepTracker) -> None:
    """A sweep ended by SIGTERM: its open trials and its own run KILLED in MLflow (not FAILED, RUNNING), and the way on.

    Why: `relay stop sweep-NAME` left the sweep's run FAILED and its trials' runs RUNNING, and the job's
    log ended mid-table without a word; Ray Tune saved its state, so the sweep continues from there.
    """
    sweeps.finish("KILLED", {}, {}, [])  # its open trials were closed before Ray shut down (``sweep.run_sweep``)
    print(f"\nsweep terminated (SIGTERM); continue it with: {resume_command(args)}", flush=True)


def _again(args: argparse.Namespace) -> str:
    """The command that runs this sweep again (add --resume to continue it), each argument quoted for a shell.

    Why quoted: an override such as `tune.space.model.name={choice: [a, b]}` holds spaces and braces,
    and the line printed without quotes failed when pasted. Why ``--address``: the sweep's cluster
    (``_with_address``); the line without it was pasted and ran the rest of the sweep on this machine.
    """
    output = ["--output", args.output] if args.output else []
    address = ["--address", args.address] if getattr(args, "address", None) else []
    stores = [f"{name}={shlex.quote(os.environ[name])}" for name in STORE_ENVS if os.environ.get(name)]
    return " ".join([*stores, shlex.join(["relay", "tune", args.config, *args.overrides, *output, *address])])


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this sweep where it was interrupted.

    In a sweep's job (`relay submit FILE --tune`) it is the `relay submit ... --resume-sweep` line the
    submit gave the job: a `relay tune --resume` pasted on the user's machine would drive the rest from there.
    """
    submitted = os.environ.get(SUBMITTED_RESUME_ENV) if run_locations.in_ray_job() else None
    return submitted or f"{_again(args)} --resume"


def interrupted_line(args: argparse.Namespace, rows: Sequence[Any], trials: int) -> str:
    """best.yaml's header line for a sweep cut off before all its trials ended: how many did, and how to go on.

    Why: an interrupted sweep's best.yaml named its best trial as a finished sweep's does, and
    nothing in it said the sweep was unfinished, so its best was read as the sweep's.
    """
    ended = sum(1 for row in rows if row.status not in ("interrupted", "unfinished"))
    return f"sweep interrupted after {ended} of {trials} trials; continue it with: {resume_command(args)}"


def _with_address(args: argparse.Namespace, address: str | None) -> argparse.Namespace:
    """``args`` with ``--address`` set to where the sweep runs: the cluster it joined (also through RAY_ADDRESS or its
    record on --resume), or `local` when asked for; the lines that say how to go on repeat it (``_again``)."""
    return argparse.Namespace(**{**vars(args), "address": address})


def recorded_address(plan: SweepPlan) -> str | None:
    """The cluster the sweep's first start joined (its ``SWEEP_STORES``), for a `--resume` without --address; None
    when it started its own Ray. Exit 2 when that cluster cannot be joined now, naming it and the ways on.

    Why: the sweep never recorded its cluster, so a resume pasted without --address started a local
    Ray and ran the rest of the sweep on the driver's machine, without a word (`relay resume` of a
    run rejoins the cluster its record names: ``pipeline.resume_address``).
    """
    address = _saved_stores(Path(plan.output)).get("ray_address")
    if not isinstance(address, str) or not address:
        return None
    problem = cluster_join.ray_cluster_problem(address, "--address")
    if problem:
        raise ConfigError(
            [
                f"--resume: sweep {plan.name} ran on the Ray cluster at {address} (its {SWEEP_STORES} says so), "
                f"which cannot be joined now: {problem.removeprefix('--address: ')}; start that cluster again, or "
                "continue the sweep elsewhere: add --address HOST:PORT (another cluster) or --address local (a new "
                "local Ray instance on this machine) to the --resume command"
            ],
            "the command line",
        )
    log.info(
        "sweep %s joined the Ray cluster at %s: resuming there (pass --address HOST:PORT or --address local to run "
        "elsewhere)",
        plan.name,
        address,
    )
    return address


def sweep_status(done: bool, scored: bool) -> str:
    """The sweep run's MLflow status: KILLED when interrupted, FAILED when no trial reported the metric."""
    if not done:
        return "KILLED"
    return "FINISHED" if scored else "FAILED"


def resume_flag() -> str:
    """The flag that continues a sweep, as the messages name it: `relay tune --resume`, or in a sweep's job (`relay
    submit FILE --tune`) the submit's `--resume-sweep` (its `--resume` takes a run id)."""
    return "--resume-sweep" if run_locations.in_ray_job() and os.environ.get(SUBMITTED_RESUME_ENV) else "--resume"


def check_resume(args: argparse.Namespace, plan: SweepPlan, exists: bool, flag: str = "") -> None:
    """`--resume` needs a sweep to continue; without it, an existing sweep must not be overwritten.

    A new name (tune.name) gives a new sweep only in the default folder, WORKSPACE/tune/NAME: with
    `--output` the folder holds this sweep's files whatever the new name, and a new name was refused
    there as a folder that is not a sweep's. ``flag``: how the messages name --resume (``resume_flag``).
    """
    flag = flag or resume_flag()
    if args.resume == exists:
        return
    if args.resume:
        output = Path(plan.output)
        held = sorted(entry.name for entry in output.iterdir()) if output.is_dir() else []
        started = f" (its start at {output} never got to a trial)" if never_started(held) else ""
        hint = f"nothing to resume at {plan.experiment_path}{started}; start it without {flag}"
    elif args.output:
        hint = (
            f"a sweep already exists at {plan.experiment_path}; continue it with {flag}, or pass another "
            "--output DIR (a new or empty folder) for a new one"
        )
    else:
        hint = (
            f"a sweep already exists at {plan.experiment_path}; continue it with {flag}, or set tune.name "
            "(tune.name=NEW) or pass --output DIR for a new one"
        )
    raise ConfigError([f"tune: {hint}"], args.config)


def check_output_free(
    args: argparse.Namespace, plan: SweepPlan, sweep_there: bool, held_sweeps: Sequence[str] = (), flag: str = ""
) -> None:
    """A new sweep writes trials.csv, trials.json and best.yaml into its folder: never over someone's files.

    ``held_sweeps``: the sweeps whose Ray Tune state the folder holds (``sweep.sweeps_in``). Such a
    folder is named as that sweep's, with how to continue it: it was called a folder of files that are
    not a sweep's, though they were one's under another name.
    """
    output = Path(plan.output)
    held = sorted(entry.name for entry in output.iterdir()) if output.is_dir() and not sweep_there else []
    if not held or never_started(held):
        return
    where = "the command line" if args.output else args.config
    if held_sweeps:
        names = ", ".join(held_sweeps)
        raise ConfigError(
            [
                f"--output: {output} holds sweep {names}, not one named {plan.name}; continue it with tune.name="
                f"{held_sweeps[0]} and {flag or resume_flag()} (it started from {output / SWEEP_CONFIG}), or pass a new or empty "
                "folder for a new sweep"
            ],
            where,
        )
    shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
    raise ConfigError(
        [f"--output: {output} already holds files that are not a sweep's ({shown}); pass a new or empty folder"], where
    )


SWEEP_CONFIG = "sweep-config.yaml"  # the config and overrides a sweep started with, beside its results


def never_started(held: Sequence[str]) -> bool:
    """Whether a sweep folder without Ray Tune state holds only the files a start writes before its first trial.

    Why: a sweep whose start failed (its cluster could not be joined) left its sweep-config.yaml and
    sweep-stores.json, and the same command run again was refused as a folder of files "not a
    sweep's"; they are this sweep's, and no trial ran, so a new start writes them afresh.
    """
    return bool(held) and set(held) <= {SWEEP_CONFIG, SWEEP_STORES}


SWEEP_STORES = "sweep-stores.json"  # the artifact store and tracking store a sweep's trials write to
STORE_ENVS = (WORKSPACE_ENV, ARTIFACT_URI_ENV, TRACKING_URI_ENV)  # the shell settings that choose them


def _save_sweep_config(output: Path, data: Mapping[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / SWEEP_CONFIG).write_text(yaml.safe_dump(dict(data), sort_keys=False))


def _save_sweep_stores(output: Path, plan: SweepPlan, ray_address: str | None = None) -> None:
    """The stores the sweep's trials write to, beside its config: a resume must use the same (``_check_same_stores``).

    ``ray_address``: the cluster the sweep joined when the command named it (--address, RAY_ADDRESS;
    ``cluster_join.address_to_record``), which `--resume` joins again (``recorded_address``).
    """
    stores = {"artifact_uri": plan.store_uri, "tracking_uri": plan.tracking_uri}
    if ray_address is not None:
        stores["ray_address"] = ray_address
    (output / SWEEP_STORES).write_text(json.dumps(stores, indent=2))


def _saved_stores(output: Path) -> dict[str, Any]:
    """What ``_save_sweep_stores`` wrote; empty when there is none or it cannot be read."""
    try:
        saved = json.loads((output / SWEEP_STORES).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _check_same_stores(args: argparse.Namespace, plan: SweepPlan) -> None:
    """`--resume` continues the sweep in the stores it started with (the run records, MLflow).

    Why: the resume command pasted into a shell without the first one's RELAY_WORKSPACE resumed an
    `--output` sweep into ./relay-workspace: its trials computed their first generations again there,
    and the ones in the first workspace stayed INTERRUPTED for good.
    """
    saved = Path(plan.output) / SWEEP_STORES
    if not args.resume or not saved.is_file():
        return
    try:
        started = json.loads(saved.read_text())
    except ValueError:  # damaged: the config check above still holds
        return
    now = {"artifact_uri": plan.store_uri, "tracking_uri": plan.tracking_uri}
    moved = [key for key in now if isinstance(started, dict) and started.get(key) not in (None, now[key])]
    if not moved:
        return
    said = "; ".join(f"{key} {started[key]}, here {now[key]}" for key in moved)
    raise ConfigError(
        [
            f"--resume: the sweep at {plan.output} started with other stores ({said}); resume it with the settings "
            f"it started with (the same {WORKSPACE_ENV}, {ARTIFACT_URI_ENV} or {TRACKING_URI_ENV}, or run.* / "
            "tracking.uri), so its trials go on where their first generations are"
        ],
        "the command line",
    )


def _check_same_sweep(args: argparse.Namespace, output: Path, data: Mapping[str, Any]) -> None:
    """`--resume` continues the sweep as it started: other settings would write a best.yaml no trial ran."""
    saved = output / SWEEP_CONFIG
    if not args.resume or not saved.is_file():
        return
    changed = differing_keys(yaml.safe_load(saved.read_text()) or {}, data)
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise ConfigError(
            [
                f"--resume: the config differs from the one the sweep at {output} started with ({shown}); resume "
                f"with the same file and overrides (saved in {saved}), or start a new sweep with --output DIR"
            ],
            args.config,
        )


def differing_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested configs (a key in one only counts)."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return [] if before == after else [prefix.rstrip(".") or "(the whole file)"]
    keys = sorted(set(before) | set(after), key=str)
    return [found for key in keys for found in differing_keys(before.get(key), after.get(key), f"{prefix}{key}.")]


def _print_ending(args: argparse.Namespace, plan: SweepPlan, done: bool, scored: bool) -> int:
    """How to continue an interrupted sweep, or how to run the best config; the exit code.

    A sweep none of whose trials reported the metric has no best.yaml: it failed (exit 1), and says
    where each trial's error is. One interrupted before any scored trial ended has none yet either
    (``trials_table.best_row``), and says so beside the way on.
    """
    if not done:
        unscored = "" if scored else " before any trial finished with a score, so there is no best.yaml yet"
        print(f"\nsweep interrupted{unscored}; continue it with: {resume_command(args)}")
        return EXIT_INTERRUPTED  # trials left unfinished: Ctrl-C (errors end a trial, they do not leave it open)
    if not scored:
        print(
            f"\nno trial reported {plan.settings.metric}, so there is no best config; each trial's error is in its "
            f"error.txt under {plan.experiment_path}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    best_yaml = Path(plan.output) / "best.yaml"
    print(f"\nBest config: {best_yaml}  (run it with: {run_best_command(best_yaml, plan)})")
    return 0


def write_sweep_outputs(
    output: Path,
    records: list[dict[str, Any]],
    best: Any,
    plan: SweepPlan,
    tied: Sequence[str] = (),
    unfinished: str | None = None,
) -> list[str]:
    """trials.csv / trials.json always; best.yaml (base config + best values, no tune section) when there is a best.

    ``tied``: the trials that scored as the best one did; best.yaml's header names them and the rule
    that chose (it claimed a tie under every sweep). ``unfinished``: the line that says the sweep was
    interrupted and how to continue it (``interrupted_line``), for its header; None for a sweep that ended.
    """
    output.mkdir(parents=True, exist_ok=True)
    (output / "trials.json").write_text(json.dumps(records, indent=2, default=str))
    columns = list(dict.fromkeys(key for record in records for key in record))
    with (output / "trials.csv").open("w", newline="") as handle:  # csv quotes a value holding commas (a list)
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(records)
    files = [str(output / "trials.csv"), str(output / "trials.json")]
    if best is not None:
        data = best_config(plan.base, best.values)  # the file the trials ran from (overrides, pins)
        note = pbt_note(plan)
        tie = f" (tied with {', '.join(tied)}; {TIE_RULE})" if tied else ""
        (output / "best.yaml").write_text(
            f"# {run_best_command(output / 'best.yaml', plan, data)}\n# best trial {best.trial_id} of sweep "
            f"{plan.name}{tie}\n"
            + (f"# {unfinished}\n" if unfinished else "")
            + (f"# {note}\n" if note else "")
            + yaml.safe_dump(data, sort_keys=False)
        )
        files.append(str(output / "best.yaml"))
    return files


def run_best_command(best_yaml: Path, plan: SweepPlan, data: Mapping[str, Any] | None = None) -> str:
    """`relay run best.yaml`, after the store settings the sweep took from the shell that best.yaml does not hold.

    best.yaml pins the workspace (``best_config``) but not the stores: a sweep tracked to a server
    through MLFLOW_TRACKING_URI (or its records in RELAY_ARTIFACT_URI) printed a bare `relay run
    best.yaml`, which tracked into a new sqlite file in the workspace instead of the sweep's server.
    A sweep that ran on a cluster (``SWEEP_STORES`` records its address) names it with `--address`: the
    line without it started a local Ray instance on this machine. A sweep that ran as a job (`relay submit
    --tune`) names `relay submit` to the cluster it was sent to: its best config is a job there too.
    """
    data = best_config(plan.base, {}) if data is None else data
    run = data.get("run") or {}
    workspace = Path(str(run.get("workspace")))
    tracking = (data.get("tracking") or {}).get("uri")
    shell = []
    if not run.get("artifact_uri") and plan.store_uri != str(workspace / "artifacts"):
        shell.append(f"{ARTIFACT_URI_ENV}={shlex.quote(plan.store_uri)}")
    if not tracking and plan.tracking_uri != f"sqlite:///{workspace / 'mlflow.db'}":
        shell.append(f"{TRACKING_URI_ENV}={shlex.quote(plan.tracking_uri)}")
    job_address = os.environ.get(JOB_ADDRESS_ENV) if run_locations.in_ray_job() else None
    if job_address:
        return " ".join([*shell, shlex.join(["relay", "submit", str(best_yaml), "--address", job_address])])
    address = _saved_stores(Path(plan.output)).get("ray_address")
    cluster = ["--address", address] if isinstance(address, str) and address else []
    return " ".join([*shell, shlex.join(["relay", "run", str(best_yaml), *cluster])])


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
    tune.set_defaults(handler=cmd_tune)
