"""`relay delete SWEEP`: a sweep named in place of a run stands for its trials, its MLflow sweep run and its folder.

Why: a sweep's trials are runs of their own (`relay runs` lists each), so deleting a sweep meant typing
every trial's id, and the sweep's own MLflow run and its folder (Ray Tune's state, trials.csv,
best.yaml) had no way out at all. A name that is no run's id is read as a sweep when trials' records
name it as theirs, or when the workspace's ``tune/NAME/`` holds a sweep's config or is empty (a sweep
stopped before its first trial). Its trials are deleted as runs are (with the stage folders no other run
uses), its MLflow sweep run is marked deleted, and its folders are removed. A sweep whose driver runs
on this machine (it holds its folder locked) is refused, as a running run is; the deletion holds the folder
locked itself until it is gone, so a `relay tune` of the sweep starting meanwhile is refused in turn.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cli.records.mlflow_runs import TrackedRuns, mlflow_part, tracked_runs, tracking_store_of
from orchestrator.cli.records.stage_folders import human_size
from orchestrator.cli.records.trials import trial_sweep
from orchestrator.cli.records.workspace import default_tracking_key
from orchestrator.cli.sweeps.sweep_folder import SWEEP_CONFIG
from orchestrator.config import RunSettings, TrackingSettings, resolve_workspace, tracking_uri
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.folder_lock import FolderHeld, folder_locked
from orchestrator.errors import ConfigError
from orchestrator.tracking.common import TAG_KIND, TAG_SWEEP


@dataclass(frozen=True)
class SweepParts:
    """What deleting one sweep removes beside its trials' runs."""

    name: str
    trials: list[str]
    folders: list[Path]  # the sweep's folders on this machine (its --output, or WORKSPACE/tune/NAME)
    tracked: TrackedRuns  # its MLflow sweep run (the trials' own are the trials' part)

    @functools.cached_property
    def size(self) -> int:
        """The bytes in the sweep's folders, measured once: the plan line shows them, `relay delete` counts them
        among what it frees."""
        return sum(path.stat().st_size for folder in self.folders for path in folder.rglob("*") if path.is_file())

    def line(self) -> str:
        folders = (
            f"its folder {', '.join(f'{folder}/' for folder in self.folders)} (Ray Tune's state, the sweep's tables "
            f"and best config; {human_size(self.size)})"
            if self.folders
            else "no folder of it on this machine"
        )
        return f"  sweep {self.name}: its {len(self.trials)} trial run(s) below; {folders}; {mlflow_part(self.tracked)}"


def trials_by_sweep(store: ArtifactStore, run_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Sweep name -> the trials among ``run_ids`` whose record names it, in id order, each with the sweep's
    folder it recorded ("" for none)."""
    found: dict[str, dict[str, str]] = {}
    for run_id in sorted(run_ids):
        record = trial_sweep(store, run_id)
        name, folder = record.get("sweep"), record.get("folder")
        if isinstance(name, str) and name:
            found.setdefault(name, {})[run_id] = folder if isinstance(folder, str) else ""
    return found


def sweep_parts(
    args: argparse.Namespace, store: ArtifactStore, name: str, trials: Mapping[str, str]
) -> SweepParts | None:
    """The sweep ``name`` (``trials``: its trials' ids and the folders they recorded, possibly none), or None when
    nothing here is that sweep.

    Exits 2 (``ConfigError``) when its driver runs on this machine, or when two sweeps share the name.
    """
    folders = _folders(args, name, trials.values())
    if not trials and not folders:
        return None
    _check_one_sweep(name, folders)
    _check_not_driven(name, folders)
    ids = list(trials)
    uri = (
        tracking_store_of(args, store, ids[0])
        if ids
        else tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    )
    query = f"tags.`{TAG_KIND}` = 'sweep' and tags.`{TAG_SWEEP}` = '{name}'"
    return SweepParts(name, ids, folders, tracked_runs(uri, name, default_tracking_key(args.workspace), query))


def remove_folders(parts: SweepParts) -> None:
    """Remove the sweep's folders (nothing in them is undone: Ray Tune's state, the tables, best.yaml)."""
    for folder in parts.folders:
        shutil.rmtree(folder, ignore_errors=not folder.exists())  # gone meanwhile: nothing left to remove


@contextlib.contextmanager
def sweeps_held(sweeps: Iterable[SweepParts]) -> Iterator[None]:
    """Hold every folder of ``sweeps`` locked while they are deleted; exit 2 (nothing deleted) when a `relay tune`
    of one holds it now.

    Why: the plan's check (``_check_not_driven``) let the lock go again, and a `relay tune --resume` that
    took the folder in the seconds the deletion spent reading MLflow (or waiting for its `y`) was deleted under
    its feet: its trials' records, its MLflow run and its folder went, and the resume failed on Ray Tune's
    missing state. Held from before the first deletion to the last, one of the two is refused whole.
    """
    with contextlib.ExitStack() as held:
        for parts in sweeps:
            for folder in parts.folders:
                try:
                    held.enter_context(folder_locked(folder))
                except FolderHeld:
                    raise ConfigError([_running_problem(parts.name, folder)], "the command line") from None
                except FileNotFoundError:  # removed meanwhile: nothing of it to hold
                    continue
        yield


def _folders(args: argparse.Namespace, name: str, recorded: Iterable[str]) -> list[Path]:
    """The sweep's folders that exist here: those its trials recorded, and WORKSPACE/tune/NAME holding its config,
    or nothing at all (a sweep interrupted before its first trial leaves it empty, its MLflow run KILLED)."""
    candidates = {Path(folder) for folder in recorded if folder}
    default = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune" / name
    if (default / SWEEP_CONFIG).is_file() or (default.is_dir() and not any(default.iterdir())):
        candidates.add(default)
    return sorted(folder for folder in candidates if folder.is_dir())


def _check_one_sweep(name: str, folders: list[Path]) -> None:
    """Refuse (exit 2) a name that two sweeps share (one written with --output elsewhere): deleting both at once
    is not what the name says; their trials' ids tell them apart."""
    if len(folders) > 1:
        raise ConfigError(
            [
                f"{name!r} names {len(folders)} sweeps ({', '.join(str(folder) for folder in folders)}): delete one "
                f"by its trials' ids (`relay runs` lists them as {name}-TRIAL), or remove the other's folder first"
            ],
            "the command line",
        )


def _check_not_driven(name: str, folders: list[Path]) -> None:
    """Refuse (exit 2) a sweep whose `relay tune` runs on this machine: its driver holds the sweep's folder locked."""
    for folder in folders:
        try:
            with folder_locked(folder):
                pass
        except FolderHeld:
            raise ConfigError([_running_problem(name, folder)], "the command line") from None
        except OSError:  # a folder that cannot be opened is not held either
            continue


def _running_problem(name: str, folder: Path) -> str:
    return (
        f"sweep {name} is not deleted: its `relay tune` is running on this machine (it holds {folder}); "
        "stop it first (Ctrl-C there), then delete it"
    )
