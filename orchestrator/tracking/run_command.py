"""How a pipeline run was started, as its MLflow run shows it: the command line's overrides.

The run record (``runs/RUN_ID/command.json`` in the artifact store, written before the run starts)
holds the config file and the command-line overrides; the MLflow run gets the overrides as a tag,
so "what did I change" reads off the runs table.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import COMMAND_FILE, record_path
from orchestrator.errors import RelayError

logger = logging.getLogger(__name__)

TAG_OVERRIDES = "relay.overrides"
MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)


@dataclass(frozen=True)
class RunCommand:
    """The config file and overrides a run was started with (its record's ``command.json``)."""

    config_path: str
    overrides: tuple[str, ...]


def read_command(config: Mapping[str, Any], run_id: str) -> RunCommand | None:
    """The command of ``run_id`` from the artifact store ``config`` names (``run.artifact_uri``); None without one.

    A Tune trial has no run record; a record that cannot be read only costs the MLflow run its tag.
    """
    store_uri = _section(config, "run").get("artifact_uri")
    if not store_uri:
        return None
    try:
        raw = ArtifactStore(str(store_uri)).read_record(record_path(run_id, COMMAND_FILE))
        command = json.loads(raw) if raw else None
    except (RelayError, OSError, ValueError) as exc:
        logger.debug("no command record for %s in %s: %s", run_id, store_uri, exc)
        return None
    if not isinstance(command, dict) or not isinstance(command.get("config"), str):
        return None
    return RunCommand(command["config"], tuple(str(o) for o in command.get("overrides") or ()))


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


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}
