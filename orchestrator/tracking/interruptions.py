"""Runs a dead driver left open: closing them INTERRUPTED, and counting the attempts they were.

Apart from the tracker because a driver killed with SIGKILL cannot close its own runs: the readers
(`relay ui`, `relay generations`) close them before they show the store, with no tracker at all,
and a resume counts them as the floor under its attempt's number (the number itself is the engine's,
from the run record). Both read the same tags, written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.tracking.common import TAG_CACHE_HIT, TAG_PIPELINE_RUN, TAG_STAGE, TAG_STATUS, mlflow_client

# On a stage run: the engine's attempt number over the run's drivers (the console's "attempt N", the ledger's
# `attempts`): 1, then 2 for the run a resume opened after an interrupted one; on a cache hit's, the attempts made.
TAG_ATTEMPT = "relay.attempt"
INTERRUPTED = "INTERRUPTED"  # relay.status of a run cut off mid-way (Ctrl-C, SIGKILL), as `relay runs` words it


def attempts_so_far(stage_runs: Iterable[Any]) -> dict[str, int]:
    """Stage name -> the attempts its earlier MLflow runs count: the highest ``relay.attempt`` tag, or the
    number of its runs where that is more (a run of older Relay has no tag but still was an attempt).
    A cache hit's run was no attempt: it is left out.

    The tracker takes this only as a floor under the engine's number (``ChildRuns.next_attempt``), for
    a run recorded by older Relay, whose ledger counted one driver's attempts.

    Why not counted run by run: the runs come newest first, and adding one per run on top of the
    highest tag seen so far made the tags go 1, 2, 4, 7 over repeated resumes.
    """
    runs_of: dict[str, int] = {}
    highest: dict[str, int] = {}
    for run in stage_runs:
        if run.data.tags.get(TAG_CACHE_HIT) == "true":
            continue
        name = run.data.tags.get(TAG_STAGE, run.info.run_name)
        runs_of[name] = runs_of.get(name, 0) + 1
        highest[name] = max(highest.get(name, 0), int(run.data.tags.get(TAG_ATTEMPT) or 0))
    return {name: max(count, highest[name]) for name, count in runs_of.items()}


def mark_interrupted(client: Any, run: Any) -> None:
    """Close a stage run a dead driver left RUNNING, or tag one closed KILLED without saying why."""
    if run.info.status == "RUNNING":
        client.set_terminated(run.info.run_id, status="KILLED")
    if TAG_STATUS not in run.data.tags:
        client.set_tag(run.info.run_id, TAG_STATUS, INTERRUPTED)


def close_interrupted(tracking_uri: str, experiment: str, run_ids: Iterable[str]) -> list[str]:
    """End KILLED every MLflow run still RUNNING of these pipeline runs, whose driver died; the ids that had one.

    Why: a driver killed with SIGKILL (or an out-of-memory kill) never closes its MLflow runs, so
    the UI showed the parent, its generations and the stage that was running as running for good,
    while `relay runs` said INTERRUPTED. Nothing is lost: `relay resume` finds the same runs by
    their tags and sets them RUNNING again (``MlflowTracker._reattach``). Each run's ``relay.status``
    tag (the parent's, its generations' and the cut-off stage's) says INTERRUPTED, how `relay runs`
    words it: a KILLED stage run without it could not be told from the resumed attempt beside it.
    """
    wanted = list(run_ids)
    if not wanted:
        return []
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:  # never created here: nothing to close, and nothing to create
        return []
    closed: list[str] = []
    for run_id in wanted:
        query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}' and attributes.status = 'RUNNING'"
        running = client.search_runs([found.experiment_id], query)
        for run in running:
            client.set_terminated(run.info.run_id, status="KILLED")
            client.set_tag(run.info.run_id, TAG_STATUS, INTERRUPTED)
        if running:
            closed.append(run_id)
    return closed
