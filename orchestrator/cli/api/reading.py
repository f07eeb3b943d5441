"""The Python API's readers: a run's generations, the store's runs, a run's stored outputs.

Each reads what the `relay` command of the same name reads (`relay generations`, `relay runs`), or a
stage's output from the manifest of the stage that wrote it in this run; a sweep's trial is read from
its sweep's config, as `relay runs` reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli.api.calls import (
    PathLike,
    as_flag,
    checked_generation,
    checked_path,
    checked_reader_args,
    checked_texts,
    command_args,
    mlflow_quieted,
)
from orchestrator.cli.common import store_of
from orchestrator.cli.installed_pipelines import installed_pipelines
from orchestrator.cli.preflight import check_run_id
from orchestrator.cli.records import runs as run_records
from orchestrator.cli.records.generations import tracking_for
from orchestrator.cli.records.trials import sweep_config_of, trial_record
from orchestrator.cli.run.run_record import read_run_record, readable_ledger
from orchestrator.cli.sweeps.sweep_folder import SWEEP_CONFIG
from orchestrator.config import RunSettings, resolve_workspace
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, DONE_STATES, LEDGER_FILE, record_path
from orchestrator.engine.manifests import ArtifactRef, Manifest
from orchestrator.errors import InputError
from orchestrator.tracking.reading import read_generations

if TYPE_CHECKING:
    import pyarrow as pa


PSEUDO_LABELS = "pseudo_labels"  # the role of a generation's pseudo-label table: artifact gNN/pseudo_labels


@mlflow_quieted()
def generations(
    run_id: str, workspace: PathLike | None = None, *, artifact_uri: str | None = None, experiment: str | None = None
) -> list[dict[str, Any]]:
    """`relay generations RUN_ID`: one dict per generation of every metric the run's MLflow parent run holds.

    Read from the tracking store the run's record names, as the command reads it (an MLflow run id
    of the run is taken too). ``workspace``/``artifact_uri``/``experiment``: the command's flags.
    """
    checked_reader_args(run_id, workspace, artifact_uri)
    checked_texts(experiment=experiment)
    args = command_args(
        "generations", run_id=run_id, workspace=as_flag(workspace), artifact_uri=artifact_uri, experiment=experiment
    )
    uri, chosen, _ = tracking_for(args)
    return read_generations(uri, chosen, args.run_id)[1]


@mlflow_quieted()
def runs(workspace: PathLike | None = None, *, artifact_uri: str | None = None) -> list[dict[str, Any]]:
    """`relay runs`: every run in the artifact store, newest first, as dicts of the command's columns.

    Keys: run_id, pipeline, status, generations ("done/total"), best (the headline metric's best
    value), started (ISO time, UTC) and problem (why a run's ledger cannot be read, else None).

    A workspace or artifact store named on purpose (the arguments, $RELAY_WORKSPACE, $RELAY_ARTIFACT_URI)
    that does not exist is InputError, as `relay runs` exits 2 on it: an empty list read as "no runs yet".
    """
    checked_path("workspace", workspace)
    checked_texts(artifact_uri=artifact_uri)
    args = command_args("runs", workspace=as_flag(workspace), artifact_uri=artifact_uri)
    store = store_of(args)
    run_records.check_named_store_exists(args, store)
    sweeps = sweeps_folder(workspace)
    rows = [dataclasses.asdict(row) for row in run_records.run_rows(store, installed_pipelines(), sweeps)]
    return [{**row, "status": str(row["status"])} for row in rows]  # plain str: yaml.safe_dump refuses an enum


@mlflow_quieted()
def artifact(
    run_id: str, name: str, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> pa.Table | dict[str, Any]:
    """One stored output of a run by its artifact name (``data/split``, ``g00/picks``): a pyarrow Table,
    or a checkpoint's dict (loaded on CPU), read from the artifact store wherever it is (a folder, s3://)."""
    checked_texts(name=name)
    store, dag = run_dag(run_id, workspace, artifact_uri)
    return store.load(stored_output(store, run_id, dag, name))


@mlflow_quieted()
def pseudo_labels(
    run_id: str, generation: int, workspace: PathLike | None = None, *, artifact_uri: str | None = None
) -> pa.Table:
    """The pseudo-labels generation ``generation``'s model gave the unlabeled pool (artifact gNN/pseudo_labels).

    One row per unlabeled sample: sample_id, pred_class, confidence, probs (one per class), generation,
    model (docs/API.md). A generation without one (the last of a CReST run only trains and evaluates;
    Knowledge Evolution labels nothing) is bad input naming those that have one.
    """
    generation = checked_generation(generation)
    store, dag = run_dag(run_id, workspace, artifact_uri)
    name = f"g{generation:02d}/{PSEUDO_LABELS}"
    labeled = {
        stage.generation
        for stage in dag.stages
        if stage.generation is not None and f"g{stage.generation:02d}/{PSEUDO_LABELS}" in stage.outputs
    }
    if generation not in labeled:
        raise InputError(
            f"run {run_id} has no pseudo-labels of generation {generation}; generations with pseudo-labels: "
            f"{', '.join(map(str, sorted(labeled))) or 'none (its pipeline labels nothing)'}"
        )
    return store.load(stored_output(store, run_id, dag, name))


def run_dag(run_id: str, workspace: PathLike | None, store_uri: str | None) -> tuple[ArtifactStore, Pipeline]:
    """The store holding the run's record and the DAG its recorded config builds (as `relay resume` builds it)."""
    store, spec, config = run_record(run_id, workspace, store_uri)
    return store, spec.build(config)


def run_record(run_id: str, workspace: PathLike | None, store_uri: str | None) -> tuple[ArtifactStore, Any, Any]:
    """The store holding the run's record, and the pipeline spec and config that record holds."""
    checked_reader_args(run_id, workspace, store_uri)
    check_run_id(run_id)
    store = store_of(argparse.Namespace(workspace=as_flag(workspace), artifact_uri=store_uri))
    if is_trial(store, run_id):
        return store, *trial_record_in_workspace(store, run_id, workspace)
    spec, config = read_run_record(store, run_id, installed_pipelines(), writes=False)
    return store, spec, config


def is_trial(store: ArtifactStore, run_id: str) -> bool:
    """Whether the run is a Tune trial: a ledger and no config.yaml (a trial keeps only its ledger, as `relay runs` reads it)."""
    has = {name: store.read_record(record_path(run_id, name)) is not None for name in (CONFIG_FILE, LEDGER_FILE)}
    return has[LEDGER_FILE] and not has[CONFIG_FILE]


def trial_record_in_workspace(store: ArtifactStore, run_id: str, workspace: PathLike | None) -> tuple[Any, Any]:
    """The spec and config of a Tune trial, read from its sweep's saved config as `relay runs` reads its pipeline.

    When the sweep's folder is not in this workspace (another workspace, or `relay tune --output`),
    InputError saying what a trial keeps and where its config was looked for.
    """
    sweeps = sweeps_folder(workspace)
    found = trial_record(sweeps, run_id, installed_pipelines(), store)  # the store names an --output sweep
    if found is not None:
        return found
    where = sweep_config_of(sweeps, run_id, store) or sweeps / "SWEEP" / SWEEP_CONFIG
    raise InputError(
        f"run {run_id} is a trial of a sweep (relay tune): a trial keeps only its ledger "
        f"({store.location(record_path(run_id, LEDGER_FILE))}) and its stages' outputs, and runs its sweep's config, "
        f"looked for in {where}, which is not there; pass the workspace the sweep ran in (workspace=...). "
        f"relay.generations({run_id!r}) reads its metrics from MLflow without it"
    )


def sweeps_folder(workspace: PathLike | None) -> Path:
    """WORKSPACE/tune, where `relay tune` keeps each sweep's folder (its config, its trials)."""
    return resolve_workspace(RunSettings(workspace=as_flag(workspace))) / "tune"


def stored_output(store: ArtifactStore, run_id: str, dag: Pipeline, name: str) -> ArtifactRef:
    """Where artifact ``name`` of the run is stored: the manifest of the stage that wrote it in this run."""
    stage = dag.producer(name)  # PipelineError (bad input) naming the run's artifacts
    manifest = finished_manifest(store, readable_ledger(store, run_id).get("stages"), stage.name)
    if manifest is None:
        raise InputError(
            f"{name} of run {run_id} is not in {store.uri}: its stage {stage.name} has not finished, or its outputs "
            f"were deleted since; `relay resume {run_id}` (or resume({run_id!r})) computes it"
        )
    return manifest.outputs[name]


def finished_manifests(store: ArtifactStore, run_id: str) -> dict[str, Manifest]:
    """Stage name -> manifest of every stage the run's ledger records as done whose outputs are still stored."""
    stages = readable_ledger(store, run_id).get("stages")
    found = {name: finished_manifest(store, stages, name) for name in stages} if isinstance(stages, Mapping) else {}
    return {name: manifest for name, manifest in found.items() if manifest is not None}


def finished_manifest(store: ArtifactStore, stages: Any, name: str) -> Manifest | None:
    """The manifest of stage ``name`` when the ledger's ``stages`` record it as done and it is still stored."""
    entry = stages.get(name) if isinstance(stages, Mapping) else None
    if not isinstance(entry, Mapping) or entry.get("state") not in DONE_STATES or not entry.get("fingerprint"):
        return None
    return store.read_manifest(str(entry["fingerprint"]))
