"""A sweep's folder before its trials: whether a start or `--resume` may use it, and what a start leaves there.

A sweep writes trials.csv, trials.json, best.yaml and Ray Tune's state into one folder
(WORKSPACE/tune/NAME, or --output). A new start must not write over someone's files; `--resume`
needs a sweep there, started with the same config (``SWEEP_CONFIG``) and the same stores and
cluster (``SWEEP_STORES``). Apart from ``tune`` (the command) and ``sweep_results`` (what a sweep
writes when it ends), which both read these files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.run import cluster_join, run_locations
from orchestrator.cli.sweeps.sweep_names import RAY_FOLDER, SWEEP_CONFIG
from orchestrator.config import ARTIFACT_URI_ENV, TRACKING_URI_ENV, WORKSPACE_ENV
from orchestrator.engine.folder_lock import FolderHeld, folder_locked
from orchestrator.errors import ConfigError
from orchestrator.tune.plan import SweepPlan

log = logging.getLogger(__name__)


SUBMITTED_RESUME_ENV = "RELAY_SWEEP_RESUME_COMMAND"  # set by `relay submit --tune`: its job's way on
SUBMITTED_START_ENV = "RELAY_SWEEP_START_COMMAND"  # set by `relay submit --tune`: its job's way to start again


def recorded_address(plan: SweepPlan) -> str | None:
    """The cluster the sweep's first start joined (its ``SWEEP_STORES``), for a `--resume` without --address; None
    when it started its own Ray. Exit 2 when that cluster cannot be joined now, naming it and the ways on.

    Why: the sweep never recorded its cluster, so a resume pasted without --address started a local
    Ray and ran the rest of the sweep on the driver's machine, without a word (`relay resume` of a
    run rejoins the cluster its record names: ``resume_checks.resume_address``).
    """
    address = saved_stores(Path(plan.output)).get("ray_address")
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
        started = f" (its start at {output} never got to a trial)" if never_started(output, plan.name) else ""
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
    if not held or never_started(output, plan.name):
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


def never_started(output: Path, name: str) -> bool:
    """Whether a sweep folder holds only what sweep ``name``'s start writes before its first trial: its
    sweep-config.yaml and sweep-stores.json, and its ``ray/NAME`` where Ray Tune saved no state yet.

    Why: a sweep whose start failed (its cluster could not be joined) left its sweep-config.yaml and
    sweep-stores.json, and the same command run again was refused as a folder of files "not a
    sweep's"; they are this sweep's, and no trial ran, so a new start writes them afresh. Why ``ray/``:
    ``tune.Tuner(...)`` writes ray/NAME/tuner.pkl as soon as it is built, before Ray Tune saves any
    state; a start cut off then (a Ctrl-C as Ray started, a kill) left it, and the folder was taken
    for a sweep's: `--resume` ended in Ray Tune's traceback and a new start was refused. Why ``errors/``: a
    start Ray Tune stopped as it set up keeps its traceback there (``sweep.SWEEP_TRACEBACK``), and says to run the
    same command again.
    """
    held = {entry.name for entry in output.iterdir()} if output.is_dir() else set()
    if RAY_FOLDER in held and not unsaved_start(output / RAY_FOLDER, name):
        return False
    return bool(held) and held <= {SWEEP_CONFIG, SWEEP_STORES, RAY_FOLDER, ERRORS_FOLDER}


ERRORS_FOLDER = "errors"  # the traceback of an error that stopped Ray Tune (``sweep.SWEEP_TRACEBACK``)
EXPERIMENT_STATE = "experiment_state-*.json"  # the files Ray Tune saves a sweep's state in (Tuner.restore reads)


def unsaved_start(ray_folder: Path, name: str) -> bool:
    """Whether ``ray_folder`` holds sweep ``name``'s folder alone (or nothing), with no state Ray Tune saved.

    Another sweep's folder there, started or not, is that sweep's (``check_output_free`` names it).
    """
    if not ray_folder.is_dir():
        return False
    entries = list(ray_folder.iterdir())
    ours = all(entry.name == name and entry.is_dir() for entry in entries)
    return ours and not any((ray_folder / name).glob(EXPERIMENT_STATE))


SWEEP_STORES = "sweep-stores.json"  # the artifact store and tracking store a sweep's trials write to


STORE_ENVS = (WORKSPACE_ENV, ARTIFACT_URI_ENV, TRACKING_URI_ENV)  # the shell settings that choose them


@contextlib.contextmanager
def driven_here(output: Path, name: str, flag: str = "") -> Iterator[None]:
    """Hold the sweep's folder locked for the block (the sweep's driver: its start or `--resume` to its end);
    exit 2 when another process on this machine holds it.

    Why: a `--resume` while the sweep's first driver still ran was taken: both drivers ran the
    same trials, the second's Ctrl-C marked the live sweep KILLED in MLflow and its trials'
    ledgers INTERRUPTED, and the records contradicted each other for good (`relay runs` called
    the sweep's best trial INTERRUPTED). The kernel lets the lock go when the driver dies, however.
    """
    with contextlib.ExitStack() as held:
        try:
            _made_and_locked(output, held)
        except FolderHeld:
            raise ConfigError(
                [
                    f"sweep {name} is still running: another `relay tune` on this machine holds {output} (or a "
                    f"`relay delete` of the sweep is removing it); wait for it, or stop it (Ctrl-C there), then "
                    f"continue it with {flag or resume_flag()}"
                ],
                "the command line",
            ) from None
        yield


def _made_and_locked(output: Path, held: contextlib.ExitStack) -> None:
    """Make ``output`` and hold it locked in ``held``; made again once if it was removed in between (a `relay
    delete` of the sweep that ended just then): the lock is on the folder itself, which must exist."""
    for attempt in (1, 2):
        output.mkdir(parents=True, exist_ok=True)
        try:
            held.enter_context(folder_locked(output))
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def save_sweep_config(output: Path, data: Mapping[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / SWEEP_CONFIG).write_text(yaml.safe_dump(dict(data), sort_keys=False))


def save_sweep_stores(output: Path, plan: SweepPlan, ray_address: str | None = None) -> None:
    """The stores the sweep's trials write to, beside its config: a resume must use the same (``check_same_stores``).

    ``ray_address``: the cluster the sweep joined when the command named it (--address, RAY_ADDRESS;
    ``cluster_join.address_to_record``), which `--resume` joins again (``recorded_address``).
    """
    stores = {"artifact_uri": plan.store_uri, "tracking_uri": plan.tracking_uri}
    if ray_address is not None:
        stores["ray_address"] = ray_address
    (output / SWEEP_STORES).write_text(json.dumps(stores, indent=2))


def saved_stores(output: Path) -> dict[str, Any]:
    """What ``save_sweep_stores`` wrote; empty when there is none or it cannot be read."""
    try:
        saved = json.loads((output / SWEEP_STORES).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def check_same_stores(args: argparse.Namespace, plan: SweepPlan) -> None:
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


def check_same_sweep(args: argparse.Namespace, output: Path, data: Mapping[str, Any]) -> None:
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
