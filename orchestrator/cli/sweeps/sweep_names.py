"""Run ids and sweep names are one namespace: a run id that is a sweep's name, or the reverse, is refused (exit 2).

Why: `relay delete NAME`, `relay generations NAME` and `relay status NAME` each take a run id or a sweep's
name, and each picked one of the two without a word when both existed (`relay delete` took the run, and
the sweep's trials, its MLflow run and folder had no name left that reached them). So the second of the
two is refused where it would be made, before anything is written: `relay run --run-id NAME` where a sweep
NAME is (``sweep_named``), and a new `relay tune` named NAME where a run NAME is (``check_name_free``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from orchestrator.config import RunSettings, resolve_workspace
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, LEDGER_FILE, RUNS, record_path
from orchestrator.errors import ArtifactError, ConfigError
from orchestrator.tune.plan import SWEEP_RECORD, SweepPlan

SWEEP_CONFIG = "sweep-config.yaml"  # the config and overrides a sweep started with, beside its results
RAY_FOLDER = "ray"  # Ray Tune's folder of the sweep's state (``SweepPlan.experiment_path`` is ray/NAME)


def sweep_named(store: ArtifactStore, workspace: Path, name: str) -> str | None:
    """Where a sweep called ``name`` shows (its folder, or a trial of it), None when none does.

    Its default folder (WORKSPACE/tune/NAME) holding its config or Ray Tune's state, else a trial in
    ``store`` whose record names it (a trial's id is ``NAME-TRIAL``: only those are read), which also
    finds a sweep written elsewhere with --output.
    """
    folder = workspace / "tune" / name
    if (folder / SWEEP_CONFIG).is_file() or (folder / RAY_FOLDER / name).is_dir():
        return f"its folder {folder}"
    for run_id in _ids_starting(store, f"{name}-"):
        if _trial_of(store, run_id) == name:
            return f"its trial {run_id} in {store.uri}"
    return None


def _ids_starting(store: ArtifactStore, prefix: str) -> list[str]:
    """The ids of the store's runs (a record or a ledger: a trial keeps only that) that start with ``prefix``."""
    found = store.newest_records(RUNS, CONFIG_FILE) + store.newest_records(RUNS, LEDGER_FILE)
    ids = {parts[1] for parts in (relative.split("/") for relative in found) if len(parts) == 3}
    return sorted(run_id for run_id in ids if run_id.startswith(prefix))


def _trial_of(store: ArtifactStore, run_id: str) -> str | None:
    """The sweep ``run_id``'s sweep record names; None for a run that is no trial, or a record not read."""
    try:
        record = json.loads(store.read_record(record_path(run_id, SWEEP_RECORD)) or b"{}")
    except (ArtifactError, ValueError):
        return None
    sweep = record.get("sweep") if isinstance(record, dict) else None
    return sweep if isinstance(sweep, str) else None


def check_run_id_free(store: ArtifactStore, run: RunSettings, run_id: str) -> None:
    """``relay run --run-id NAME`` where a sweep NAME is: exit 2, nothing written (see the module's why)."""
    where = sweep_named(store, resolve_workspace(run), run_id)
    if where is not None:
        raise ConfigError(
            [
                f"--run-id: {run_id!r} is the name of a sweep ({where}), and `relay delete`, `relay generations` "
                "and `relay status` take a run id or a sweep's name: pick another id (or leave --run-id out for a new one)"
            ],
            "the command line",
        )


def check_name_free(args: argparse.Namespace, plan: SweepPlan) -> None:
    """A new sweep named as a run is: exit 2, nothing written (see the module's why). A `--resume` goes on: its
    sweep was there first."""
    if args.resume:
        return
    store = ArtifactStore(plan.store_uri)
    try:
        taken = any(store.read_record(record_path(plan.name, name)) is not None for name in (CONFIG_FILE, LEDGER_FILE))
    except ArtifactError:  # a store that does not answer: the location checks that follow say so
        return
    if taken:
        raise ConfigError(
            [
                f"tune.name: {plan.name!r} is the id of a run in {plan.store_uri}, and `relay delete`, `relay "
                "generations` and `relay status` take a run id or a sweep's name: name the sweep otherwise "
                "(tune.name=NEW)"
            ],
            args.config,
        )
