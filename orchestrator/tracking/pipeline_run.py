"""The pipeline run, the root of a run's tree: its tags and description, its start record, its summary.

Apart from the tracker because what the root carries is fixed by the run's config and command, not
by the stages: the tags a new run is made with, the config.yaml and params logged at the start (and
filled in by a resume when a start was cut short), and the per-generation table it ends with. The
tracker decides when; these functions say what, each on the client and run ids it is handed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.tracking import report, run_command
from orchestrator.tracking.common import (
    TAG_KIND,
    TAG_NAME,
    TAG_PARENT,
    TAG_PIPELINE,
    TAG_PIPELINE_RUN,
    log_params,
    named_step,
)
from orchestrator.tracking.descriptions import TAG_NOTE, closing_note, started_with
from orchestrator.tracking.provenance import provenance_tags
from orchestrator.tracking.reading import generation_rows

logger = logging.getLogger(__name__)

CUT_SHORT = ("KILLED", "STOPPED")  # statuses whose unfinished generation runs end KILLED too
RELAY_WORD = {"KILLED": "INTERRUPTED"}  # the parent's relay.status tag reads as `relay runs` does
START, END = "the run's start", "the run's end"  # where the store stopped answering, outside any stage
START_CUT_SHORT = "the run's start (after its MLflow run was made)"  # no config.yaml or params: a partial start
CONFIG_ARTIFACT = "config.yaml"  # the pipeline run's rerunnable config (run_command.rerunnable_yaml)


def identity_tags(kind: str | None, pipeline_name: str) -> dict[str, str]:
    """``relay.pipeline``: the pipeline kind (`crest`), where the config says it; ``relay.name``: its name.

    Why: the pipeline run held the name in relay.pipeline, where `relay runs` and the Ray job's
    metadata hold the kind, so filtering MLflow by tags.relay.pipeline = 'crest' found nothing.
    """
    return {**({TAG_PIPELINE: kind} if kind else {}), TAG_NAME: pipeline_name}


def opening_note(run_id: str, kind: str | None, pipeline_name: str, command: run_command.RunCommand | None) -> str:
    """The pipeline run's description until it ends (``closing_note`` then puts its table in); again on resume."""
    return (
        f"Relay run `{run_id}`: pipeline `{kind or '?'}` ({pipeline_name}){started_with(command)}. "
        "Its per-generation table is written here when the run ends."
    )


def command_tags(command: run_command.RunCommand | None, run_id: str) -> dict[str, str]:
    """``relay.overrides``: what the command line changed, in the runs table (none known: no tag)."""
    if command is None:
        return {}
    return {run_command.TAG_OVERRIDES: run_command.overrides_tag(command.overrides, run_id)}


def new_run_tags(
    run_id: str, identity: Mapping[str, str], note: str, own_tags: Mapping[str, str], nest_under: str | None
) -> dict[str, str]:
    """The tags a new pipeline run is created with."""
    return {
        TAG_PIPELINE_RUN: run_id,
        **identity,
        TAG_KIND: "pipeline",
        **provenance_tags(),
        TAG_NOTE: note,
        **own_tags,
        **({TAG_PARENT: nest_under} if nest_under else {}),
    }


def written_locations(
    config: Mapping[str, Any], command: run_command.RunCommand | None, started_in: Path | None, nested: bool
) -> dict[tuple[str, str], Any] | None:
    """The store locations the user wrote, for the MLflow run's config.yaml (None: unknown, left null there).

    From the command's config file and overrides; a sweep's trial has no command, and its config
    was built from the sweep's file as written (never resolved), so it is its own source.
    """
    if command is not None:
        return run_command.written_locations(command, started_in)
    return run_command.locations_in(config) if nested else None


def find_runs(client: Any, experiment_id: str, run_id: str, kind: str) -> list[Any]:
    query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}' and tags.`{TAG_KIND}` = '{kind}'"
    return list(client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"]))


def log_start_record(
    client: Any,
    parent: str,
    run_id: str,
    params: Mapping[str, str],
    config: Mapping[str, Any],
    locations: Callable[[], dict[tuple[str, str], Any] | None],
    only_missing: bool,
) -> None:
    """config.yaml and the params on the pipeline run; ``only_missing``: those an earlier start left out.

    Why on reattach: a start cut short (START_CUT_SHORT) left the run without them, and `relay
    resume` is what fills its record in. Only what is missing: a param once logged cannot change
    (a PBT trial goes on with new values), and the first attempt's config.yaml stays.
    ``locations`` is asked only when config.yaml is written.
    """
    has_config = False
    if only_missing:
        with named_step(f"reading what MLflow run {parent} holds"):
            params, has_config = missing_params(client, parent, params), has_artifact(client, parent, CONFIG_ARTIFACT)
    if not has_config:
        text = run_command.rerunnable_yaml(config, locations(), run_id)
        with named_step(f"logging {CONFIG_ARTIFACT} to MLflow run {parent}"):
            client.log_text(parent, text, CONFIG_ARTIFACT)
    if params:
        with named_step(f"logging {len(params)} params to MLflow run {parent}"):
            log_params(client, parent, params)


def missing_params(client: Any, parent: str, params: Mapping[str, str]) -> dict[str, str]:
    """The run's params that its pipeline run lacks (keys as ``log_params`` cuts them)."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH

    logged = client.get_run(parent).data.params
    return {k: v for k, v in params.items() if k[:MAX_ENTITY_KEY_LENGTH] not in logged}


def has_artifact(client: Any, run: str, path: str) -> bool:
    return any(item.path == path for item in client.list_artifacts(run))


def close_cut_short_start(client: Any, parent: str, run_id: str) -> None:
    """End FAILED the pipeline run a start cut short left RUNNING, its description saying why; a failure only logs.

    Relay calls the store no more in this attempt (``lost_at``), so without this the run read RUNNING
    for good in the UI, with no word of its missing config and params; `relay resume` reattaches to it.
    """
    note = (
        f"Relay run `{run_id}`: its tracking start failed part-way (the driver's log says where), so this "
        f"MLflow run lacks its {CONFIG_ARTIFACT} or params and the rest of the run; "
        f"`relay resume {run_id}` fills it in."
    )
    try:
        client.set_tag(parent, TAG_NOTE, note)
        client.set_terminated(parent, status="FAILED")
    except Exception as exc:
        logger.debug("could not close MLflow run %s after its start failed: %s", parent, exc)


def log_summary(client: Any, parent: str, run_id: str, heading: str) -> None:
    """generations.csv and generations.html on the parent: every per-generation metric, one row each.

    The same rows go into the pipeline run's description as a Markdown table, which the run's page
    shows first; a run ended before any generation's result says so there instead.
    """
    rows = generation_rows(client, parent)
    client.set_tag(parent, TAG_NOTE, closing_note(heading, rows))
    if rows:
        client.log_text(parent, report.generation_csv(rows), "generations.csv")
        client.log_text(parent, report.generation_html(rows, f"{run_id}: per generation"), "generations.html")
