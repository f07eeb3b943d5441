"""A run's record beside its artifacts: the config and command it started with, written and read back.

`relay run` saves the resolved config (its stores written in, ``with_locations``) and the command that
made it; `relay resume`, `relay runs`, `relay generations` and the Python API read them back
(``read_run_record``), with the ledger (``readable_ledger``). A record read in another workspace than
the one it was written in says so (``relocated_workspace``): it keeps the absolute stores of where
the run started.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.common import Pipelines
from orchestrator.cli.preflight import location_problems
from orchestrator.config import validate_config
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import (
    COMMAND_FILE,
    CONFIG_FILE,
    done_in,
    read_command_record,
    read_ledger,
    record_path,
    this_driver,
)
from orchestrator.errors import ConfigError, RelayError
from orchestrator.jobs.submit import submitted_config_origin
from orchestrator.registry import get_pipeline
from orchestrator.yaml_input import yaml_mapping


def with_locations(config: Any, store: str, tracking: str) -> Any:
    """``config`` with its artifact store and tracking URI written in, as resolved where the run started.

    Saved so in the run record, a resume on any machine (a new head node, a laptop) writes to
    the same stores whatever its own environment says.
    """
    run = config.run.model_copy(update={"artifact_uri": store})
    return config.model_copy(update={"run": run, "tracking": config.tracking.model_copy(update={"uri": tracking})})


def moved_workspace(config: Any, store_uri: str) -> tuple[Path, Path] | None:
    """(recorded workspace, workspace now) when a run's record was found in a workspace moved as a whole.

    A relocated workspace (``relocated_workspace``) whose old place no longer holds the run's
    tracking database: the run's tracking database is NEW's. None when nothing moved, the old
    place is still there (a copy), or the stores were not the workspace's.
    """
    relocated = relocated_workspace(config, store_uri)
    if relocated is None or (relocated[0] / "mlflow.db").exists():
        return None
    return relocated


def relocated_workspace(config: Any, store_uri: str) -> tuple[Path, Path] | None:
    """(recorded workspace, workspace now) when a run's record is read in another workspace than it started in.

    The record keeps the absolute stores of where the run started (``with_locations``): the
    artifact store ``OLD/artifacts`` and, when it tracked into the workspace's own database,
    ``sqlite:///OLD/mlflow.db``. Found at ``NEW/artifacts``, the workspace was moved or copied.
    None when it is the same folder (also by another path, a symlink), or the stores were not
    the workspace's.
    """
    return relocated_stores(config.run.artifact_uri, config.tracking.uri, store_uri)


def relocated_stores(recorded: str | None, tracking: str | None, store_uri: str) -> tuple[Path, Path] | None:
    """``relocated_workspace`` of a record's artifact store ``recorded`` and tracking URI ``tracking``."""
    if not recorded or recorded == store_uri or "://" in recorded or "://" in store_uri:
        return None
    old, new = Path(recorded).parent, Path(store_uri).parent
    if Path(recorded).name != "artifacts" or Path(store_uri).name != "artifacts":
        return None
    if tracking != f"sqlite:///{old / 'mlflow.db'}":
        return None
    if old.exists() and new.exists() and os.path.samefile(old, new):
        return None
    return old, new


def tracked_in_this_workspace(store: ArtifactStore, run_id: str, tracking_store: str) -> bool:
    """Whether run ``run_id``, whose record ``store`` holds in a workspace moved or copied since it ran, tracked into
    that workspace's own database, which is ``tracking_store`` now.

    Why: its record names the database where it started (``sqlite:///OLD/mlflow.db``), and the
    readers (`relay generations`, `relay ui`) took that for another store than ``NEW/mlflow.db``:
    they said the run "was tracked in" the old one while showing that very run from the new one.
    A record that cannot be read is no such run (False).
    """
    try:
        text = store.read_record(record_path(run_id, CONFIG_FILE))
        data = yaml_mapping(text.decode(), record_path(run_id, CONFIG_FILE)) if text is not None else {}
    except (RelayError, UnicodeDecodeError):
        return False
    run, tracking = data.get("run"), data.get("tracking")
    if not isinstance(run, dict) or not isinstance(tracking, dict):
        return False
    relocated = relocated_stores(run.get("artifact_uri"), tracking.get("uri"), store.uri)
    return relocated is not None and tracking_store == f"sqlite:///{relocated[1] / 'mlflow.db'}"


def save_run_record(
    store: ArtifactStore,
    run_id: str,
    config: Any,
    config_path: str,
    overrides: list[str],
    rerun: frozenset[str] = frozenset(),
    ray_address: str | None = None,
) -> None:
    """The resolved config and the command that made it, beside the artifacts: `relay resume` reads them back.

    ``rerun``: the stages `--no-cache` / `--rerun-from` asked to compute afresh; a resume still
    computes those it had not reached instead of taking another run's cached outputs.
    ``ray_address``: the cluster the run joined as its driver when the command named it (``--address``,
    RAY_ADDRESS; ``cluster_join.address_to_record``), so that `relay resume` joins it again
    (``recorded_ray_address``) instead of finishing the run on a new local Ray instance.
    A job's copy of a config sent with it is recorded as the file the user submitted, and the machine it is on
    (``config_sent_from``): MLflow shows the record's config as the run's source and command.
    """
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    store.write_record(record_path(run_id, CONFIG_FILE), text.encode())
    driver = this_driver()  # `relay runs` tells a driver that died starting; a job's names its cluster
    sent = submitted_config_origin(config_path)  # (host, path) when this is a job's copy of the user's file
    command: dict[str, Any] = {"config": config_path}
    if sent:  # the store locations the user wrote are read from the copy (``RunCommand.readable_path``)
        command = {"config": sent[1], "config_sent_from": sent[0], "config_copy": config_path}
    command |= {"overrides": overrides, "rerun": sorted(rerun), "driver": driver}
    if ray_address is not None:
        command["ray_address"] = ray_address
    store.write_record(record_path(run_id, COMMAND_FILE), json.dumps(command).encode())


def recorded_ray_address(store: ArtifactStore, run_id: str) -> str | None:
    """The cluster a run's record says it joined (``save_run_record``); None: it started its own Ray, or
    its config names the cluster (``run.ray_address``), or the record is older or unreadable."""
    address = read_command_record(store, run_id).get("ray_address")
    return address if isinstance(address, str) and address else None


def rerun_on_resume(store: ArtifactStore, run_id: str) -> frozenset[str]:
    """The stages the run was asked to compute afresh that it has not computed yet (none for a plain run).

    A stage this run finished shows in its ledger as succeeded (the attempt that ran it) or
    cached (later attempts reusing it); either way it is this run's own output and is kept.
    """
    rerun = read_command_record(store, run_id).get("rerun")
    requested = {str(name) for name in rerun} if isinstance(rerun, list) else set()  # unreadable: nothing afresh
    return frozenset(requested - done_stages(store, run_id)) if requested else frozenset()


def done_stages(store: ArtifactStore, run_id: str) -> frozenset[str]:
    """The stages a run's ledger records as done (its own outputs); none when there is no readable ledger."""
    return done_in(readable_ledger(store, run_id).get("stages"))


def readable_ledger(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """The run's ledger, or an empty one when there is none or it cannot be read (the command reports that itself)."""
    try:
        ledger = read_ledger(store, run_id)
    except (ValueError, RelayError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


MLFLOW_ID_SHAPE = re.compile(r"[0-9a-f]{8,32}")  # a whole MLflow run id, or the 8-character start its UI shows
MLFLOW_ID_HINT = (  # `relay run` prints the MLflow run id to open in the UI: a user may take it for the run's id
    "; this looks like an MLflow run id, which the tracking store here does not know: pass the Relay run id "
    "(`relay runs` lists them; in MLflow it is the run's name and its relay.pipeline_run tag)"
)


def read_run_record(store: ArtifactStore, run_id: str, pipelines: Pipelines, writes: bool = True) -> tuple[Any, Any]:
    """The spec and config a run was started with, from its record in ``store``; a missing or damaged run is bad input.

    ``writes`` False: the caller only reads the run (``location_problems``), so its folders need not be writable.
    """
    text = store.read_record(record_path(run_id, CONFIG_FILE))
    if text is None:
        raise ConfigError(
            [
                f"run_id: no run {run_id!r} in the artifact store {store.uri}; list its runs with "
                f"`relay runs --artifact-uri {store.uri}`, "
                "or pass the store the run wrote to (--workspace, --artifact-uri or RELAY_ARTIFACT_URI)"
                + MLFLOW_ID_HINT
                * bool(MLFLOW_ID_SHAPE.fullmatch(run_id))
            ],
            "the command line",
        )
    source = store.location(record_path(run_id, CONFIG_FILE))
    try:
        decoded = text.decode()
    except UnicodeDecodeError as exc:  # `relay run` writes YAML as UTF-8: this file was edited or damaged since
        raise ConfigError(
            [
                f"not UTF-8 text (byte {exc.start}: {exc.reason}), so not the config `relay run` saved; "
                "restore it, or start the run again with `relay run`"
            ],
            source,
        ) from exc
    return load_saved_config(decoded, source, pipelines, writes)


def load_saved_config(text: str, source: str, pipelines: Pipelines, writes: bool = True) -> tuple[Any, Any]:
    """The pipeline spec and validated config of a run, from the config.yaml saved when it started."""
    data = yaml_mapping(text, source)
    spec = get_pipeline(data.get("pipeline"), pipelines, source=source, recorded=True)
    config = validate_config(spec.config_model, data, source=source)
    problems = location_problems(config.run, config.tracking, writes=writes)
    if problems:
        raise ConfigError(problems, source)
    return spec, config
