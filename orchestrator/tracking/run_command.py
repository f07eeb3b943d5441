"""How a pipeline run was started, as its MLflow run shows it: the overrides, and a config that reruns anywhere.

The run record (``runs/RUN_ID/command.json`` in the artifact store, written before the run starts)
holds the config file and the command-line overrides; the config the tracker is given has the
stores resolved and written in (``relay resume`` needs them, machine-specific as they are). The
MLflow run gets the overrides as a tag, and a ``config.yaml`` whose store locations are what the
user wrote, so that ``relay run config.yaml`` reruns where whoever runs it works, not into the
original workspace (all cache hits, models registered in the old registry).
"""

from __future__ import annotations

import copy
import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import apply_overrides, load_yaml
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import COMMAND_FILE, read_command_record
from orchestrator.errors import RelayError

logger = logging.getLogger(__name__)

TAG_OVERRIDES = "relay.overrides"
MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)
# The keys a run resolves to this machine's stores (cli: with_locations), as (section, key).
LOCATION_KEYS = (("run", "workspace"), ("run", "artifact_uri"), ("tracking", "uri"))


@dataclass(frozen=True)
class RunCommand:
    """The config file and overrides a run was started with (its record's ``command.json``)."""

    config_path: str
    overrides: tuple[str, ...]
    copy_path: str | None = None  # the job's copy of a config `relay submit` sent with it; config_path is the user's

    @property
    def readable_path(self) -> str:
        """The file this machine can read the config from: the job's copy of a sent config, else the user's file.

        Why: a sent config's recorded path is the submitting machine's, where the cluster may hold another file
        of that name or none.
        """
        return self.copy_path or self.config_path


def read_command(config: Mapping[str, Any], run_id: str) -> RunCommand | None:
    """The command of ``run_id`` from the artifact store ``config`` names (``run.artifact_uri``); None without one.

    A Tune trial has no run record; a record that cannot be read only costs the MLflow run its tag.
    """
    store_uri = _section(config, "run").get("artifact_uri")
    if not store_uri:
        return None
    try:
        command = read_command_record(ArtifactStore(str(store_uri)), run_id)
    except (RelayError, OSError) as exc:
        logger.debug("no command record for %s in %s: %s", run_id, store_uri, exc)
        return None
    if not isinstance(command.get("config"), str):
        return None
    copy = command.get("config_copy")
    overrides = tuple(str(o) for o in command.get("overrides") or ())
    return RunCommand(command["config"], overrides, copy if isinstance(copy, str) else None)


def overrides_tag(overrides: Sequence[str], run_id: str) -> str:
    """The overrides as a shell would take them (``train.steps=60 'tracking.experiment=my runs'``), within MLflow's limit.

    Cut at a whole override, never inside one, with how many were left out and where they all are.
    """
    quoted = [shlex.quote(override) for override in overrides]
    text = " ".join(quoted)
    if len(text) <= MAX_TAG_CHARS:
        return text
    for count in range(len(quoted) - 1, -1, -1):
        cut = f"{' '.join(quoted[:count])} ... ({len(quoted) - count} more: runs/{run_id}/{COMMAND_FILE})".lstrip()
        if len(cut) <= MAX_TAG_CHARS:
            return cut
    return ""  # unreachable: with no override kept, the note alone fits


def written_locations(command: RunCommand, started_in: Path | None = None) -> dict[tuple[str, str], Any] | None:
    """The store locations as the user wrote them (config file, then overrides); None when the file is unreadable.

    A relative config path is read from ``started_in``, the directory the command started in (``current_directory()`` then),
    when known. Why: read against the current directory, a driver whose directory was deleted under it (a Ray
    job's working_dir unpacked again) failed with an ENOENT naming no path, which cut its MLflow start short.
    """
    path = Path(command.readable_path)
    if started_in is not None and not path.is_absolute():
        path = started_in / path
    try:
        data = apply_overrides(load_yaml(path), list(command.overrides))
    except (RelayError, OSError) as exc:  # moved or edited since the run started; or relative to a deleted directory
        logger.debug("could not read the store locations %s wrote: %s", command.readable_path, exc)
        return None
    return locations_in(data)


def locations_in(config: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """The values of LOCATION_KEYS in ``config`` (None where absent)."""
    return {(section, key): _section(config, section).get(key) for section, key in LOCATION_KEYS}


def rerunnable_config(config: Mapping[str, Any], written: Mapping[tuple[str, str], Any] | None) -> dict[str, Any]:
    """``config`` with its store locations set back to ``written`` (null where the user wrote none, or unknown)."""
    result = copy.deepcopy(dict(config))
    for section, key in LOCATION_KEYS:
        if isinstance(result.get(section), dict):
            result[section][key] = (written or {}).get((section, key))
    return result


def rerunnable_yaml(config: Mapping[str, Any], written: Mapping[tuple[str, str], Any] | None, run_id: str) -> str:
    """The MLflow run's ``config.yaml``: ``rerunnable_config`` under a first line saying where a rerun writes."""
    rerun = rerunnable_config(config, written)
    named = [f"{section}.{key}" for section, key in LOCATION_KEYS if _section(rerun, section).get(key)]
    whoever = "in the workspace of whoever runs it ($RELAY_WORKSPACE, else ./relay-workspace)"
    where = f"with its stores as written ({', '.join(named)})" if named else whoever
    if named and "run.workspace" not in named:
        where += f", the rest {whoever}"
    heading = f"# config of Relay run {run_id}; `relay run config.yaml` reruns it {where}\n"
    return heading + yaml.safe_dump(rerun, sort_keys=False)


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}
