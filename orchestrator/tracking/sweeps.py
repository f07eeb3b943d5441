"""A Tune sweep's own MLflow run: the parent that every trial's pipeline run nests under."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from orchestrator.tracking.common import (
    TAG_KIND,
    TAG_NAME,
    TAG_PARENT,
    TAG_PIPELINE,
    TAG_PIPELINE_RUN,
    TAG_STATUS,
    TAG_SWEEP,
    default_artifact_location,
    guarded,
    log_params,
    mlflow_client,
    open_experiment,
)
from orchestrator.tracking.interruptions import INTERRUPTED

T = TypeVar("T")
TAG_SWEEP_OUTPUT = "relay.tune.output"  # the sweep's folder: what tells two sweeps of one name apart
TAG_DRIVER_HOST = "relay.driver.host"  # where the sweep's driver runs, and its pid: `relay ui` closes a dead one's run
TAG_DRIVER_PID = "relay.driver.pid"
GOING_ON = "the sweep goes on without it"
TAG_BEST_RUN = "relay.best_run"  # on a finished sweep's run: the Relay run id of its best trial
TRIALS_NAMED = 10  # trials a message names before it counts the rest


class SweepTracker:
    """A Tune sweep's parent run: each trial's pipeline run nests under it (mlflow.parentRunId).

    It holds what only the sweep knows: the search settings (params), the
    table of trials and the best trial's values. Like MlflowTracker it warns
    instead of failing unless strict, and reattaches on resume by the sweep's
    name, so a resumed sweep keeps one parent.
    """

    def __init__(self, tracking_uri: str, experiment: str = "relay", strict: bool = False) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.strict = strict
        self.run_id: str | None = None
        self._client: Any = None

    def _guard(self, op: str, action: Callable[[], T]) -> T | None:
        return guarded(op, action, self.tracking_uri, self.strict, GOING_ON)

    def start(
        self,
        sweep: str,
        pipeline_name: str,
        params: Mapping[str, str],
        settings_text: str,
        output: str = "",
        resume: bool = False,
        pipeline_kind: str | None = None,
    ) -> str | None:
        """Create the sweep's parent run (or, on resume, find the one of the sweep at ``output``); returns its id.

        A new sweep always gets a new parent: two sweeps of one name (another --output) are two
        searches, and nesting the second's trials under the first would overwrite its best trial.
        ``pipeline_name`` (the config's name) is tagged relay.name, ``pipeline_kind`` (crest) relay.pipeline,
        as on the trials' pipeline runs.
        """
        identity = {TAG_NAME: pipeline_name, **({TAG_PIPELINE: pipeline_kind} if pipeline_kind else {})}
        self.run_id = self._guard(
            "start_sweep", lambda: self._start(sweep, identity, params, settings_text, output, resume)
        )
        return self.run_id

    def _start(
        self,
        sweep: str,
        identity: Mapping[str, str],
        params: Mapping[str, str],
        settings_text: str,
        output: str,
        resume: bool,
    ) -> str:
        self._client, experiment_id = open_experiment(
            self.tracking_uri, self.experiment, default_artifact_location(self.tracking_uri)
        )
        if resume:
            query = f"tags.`{TAG_SWEEP}` = '{sweep}' and tags.`{TAG_KIND}` = 'sweep'"
            runs = self._client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"])
            found = [run for run in runs if run.data.tags.get(TAG_SWEEP_OUTPUT, output) == output]
            if found:
                self._client.update_run(found[0].info.run_id, status="RUNNING")
                for key, value in {**identity, **driver_tags()}.items():  # a sweep of older Relay gets them too
                    self._client.set_tag(found[0].info.run_id, key, value)
                if TAG_STATUS in found[0].data.tags:  # `relay ui` said INTERRUPTED: no longer true
                    self._client.delete_tag(found[0].info.run_id, TAG_STATUS)
                return found[0].info.run_id
        tags = {TAG_KIND: "sweep", TAG_SWEEP: sweep, **identity, TAG_SWEEP_OUTPUT: output}
        run = self._client.create_run(experiment_id, tags={**tags, **driver_tags()}, run_name=sweep).info.run_id
        self._client.log_text(run, settings_text, "tune.yaml")
        log_params(self._client, run, params)
        return run

    def close_trial(self, pipeline_run: str, status: str, tags: Mapping[str, str], interrupted: bool = False) -> None:
        """Tag a trial's pipeline run, set its final status, close its open generation and stage runs.

        A trial stopped by the scheduler is cut off inside its report and
        cannot say how it ended; the sweep's driver can. Its open runs are
        complete generations (FINISHED); those of a trial ``interrupted`` by
        the sweep's Ctrl-C were cut off mid-stage (KILLED, as a `relay run`'s
        are), and `relay tune --resume` reopens its generation runs.
        """
        if self.run_id is not None:
            self._guard("close_trial", lambda: self._close_trial(pipeline_run, status, tags, interrupted))

    def _close_trial(self, pipeline_run: str, status: str, tags: Mapping[str, str], interrupted: bool) -> None:
        experiment = self._client.get_experiment_by_name(self.experiment)
        query = f"tags.`{TAG_PIPELINE_RUN}` = '{pipeline_run}'"
        still_open = "FAILED" if status == "FAILED" else "KILLED" if interrupted else "FINISHED"
        for run in self._client.search_runs([experiment.experiment_id], query, max_results=5000):
            kind = run.data.tags.get(TAG_KIND)
            if kind == "pipeline":  # the driver knows how the trial ended; a stopped trial may have said FAILED
                for key, value in tags.items():
                    self._client.set_tag(run.info.run_id, key, value)
                self._client.set_terminated(run.info.run_id, status=status)
            else:
                self._close_child(run, still_open, tags.get(TAG_STATUS, INTERRUPTED))

    def _close_child(self, run: Any, still_open: str, trial_word: str) -> None:
        """Close a trial's generation or stage run it left open, and give each one its ``relay.status`` tag.

        Why also closed ones: Tune ends a stopped trial's process without waiting for its last
        writes (the trainable's cleanup does not join the training thread), so the trial's own
        ``end_pipeline`` may be cut between closing a generation run and tagging it: the run read
        FINISHED with no ``relay.status``, unlike every other generation run.
        """
        ended = run.info.status
        if ended == "RUNNING":
            ended = still_open
            self._client.set_terminated(run.info.run_id, status=ended)
        elif run.data.tags.get(TAG_STATUS) not in (None, "RUNNING"):  # closed and said so by the trial itself
            return
        self._client.set_tag(run.info.run_id, TAG_STATUS, trial_word if ended == "KILLED" else ended)

    def close_open_trials(self, tags: Mapping[str, str]) -> None:
        """Close every trial of the sweep whose pipeline run is still RUNNING as cut off mid-stage (KILLED, ``tags``).

        Why: `relay stop` of a sweep's job ends its driver with SIGTERM inside Ray Tune's loop, which then
        neither returns its trials nor closes them: their MLflow runs (and their open generation and stage
        runs) read RUNNING for good, while `relay runs` said INTERRUPTED. `--resume-sweep` reopens them.
        """
        if self.run_id is not None:
            self._guard("close_open_trials", lambda: self._close_open_trials(tags))

    def _close_open_trials(self, tags: Mapping[str, str]) -> None:
        query = f"tags.`{TAG_PARENT}` = '{self.run_id}' and tags.`{TAG_KIND}` = 'pipeline'"
        experiment = self._client.get_experiment_by_name(self.experiment)
        for run in self._client.search_runs([experiment.experiment_id], query, max_results=5000):
            if run.info.status == "RUNNING":
                name = run.data.tags.get(TAG_PIPELINE_RUN, run.info.run_name)
                self._close_trial(name, "KILLED", tags, interrupted=True)

    def finish(self, status: str, tags: Mapping[str, str], metrics: Mapping[str, float], files: Iterable[str]) -> None:
        """Log the trials table (files), the best trial's values (tags) and metric, and close the run."""
        if self.run_id is not None:
            self._guard("finish_sweep", lambda: self._finish(status, tags, metrics, files))

    def _finish(self, status: str, tags: Mapping[str, str], metrics: Mapping[str, float], files: Iterable[str]) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self._client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()],
        )
        for path in files:
            self._client.log_artifact(self.run_id, path)
        self._client.set_terminated(self.run_id, status=status)


def driver_tags() -> dict[str, str]:
    """This process as a sweep's driver: its host and pid."""
    return {TAG_DRIVER_HOST: socket.gethostname(), TAG_DRIVER_PID: str(os.getpid())}


class ClosedSweep(NamedTuple):
    """A sweep `relay ui` closed: its name, and the trials (Relay run ids) it closed with it."""

    name: str
    trials: list[str]


def close_dead_sweeps(tracking_uri: str, experiment: str, alive: Callable[[int], bool]) -> list[ClosedSweep]:
    """End KILLED (``relay.status`` INTERRUPTED) each sweep run still RUNNING whose driver on this host is dead,
    and every run under it still RUNNING: its trials' pipeline runs and their generation and stage runs.

    Why: a sweep's driver killed outright (SIGKILL, out of memory) never closes its run, so the UI
    showed the sweep running for good. Its trials are found by their MLflow tags, not their ledgers:
    a trial killed just after it started has no ledger yet (`relay runs` does not know it), and its
    run read RUNNING under a KILLED sweep. A sweep whose driver ran elsewhere may be alive and is
    left; `relay tune --resume` sets the runs RUNNING again.
    """
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:  # never created here: nothing to close, and nothing to create
        return []
    query = f"tags.`{TAG_KIND}` = 'sweep' and attributes.status = 'RUNNING'"
    closed = []
    for run in client.search_runs([found.experiment_id], query, max_results=5000):
        tags = run.data.tags
        pid = tags.get(TAG_DRIVER_PID, "")
        if tags.get(TAG_DRIVER_HOST) != socket.gethostname() or not pid.isdigit() or alive(int(pid)):
            continue
        trials = _close_open_trials_of(client, run)
        client.set_terminated(run.info.run_id, status="KILLED")
        client.set_tag(run.info.run_id, TAG_STATUS, INTERRUPTED)
        closed.append(ClosedSweep(tags.get(TAG_SWEEP, run.info.run_name), trials))
    return closed


def _close_open_trials_of(client: Any, sweep_run: Any) -> list[str]:
    """End KILLED (INTERRUPTED) every RUNNING run of the sweep's trials; the trials that had one, in start order."""
    closed = []
    for trial in trial_runs(client, sweep_run):
        query = f"tags.`{TAG_PIPELINE_RUN}` = '{trial}' and attributes.status = 'RUNNING'"
        running = client.search_runs([sweep_run.info.experiment_id], query, max_results=5000)
        for run in running:
            client.set_terminated(run.info.run_id, status="KILLED")
            client.set_tag(run.info.run_id, TAG_STATUS, INTERRUPTED)
        if running:
            closed.append(trial)
    return closed


def is_sweep_run(tags: Mapping[str, str]) -> bool:
    """Whether an MLflow run's tags make it a sweep's parent run (SweepTracker), not a pipeline run of its own."""
    return tags.get(TAG_KIND) == "sweep"


def sweep_run_named(client: Any, name: str) -> Any | None:
    """The newest MLflow run of the sweep called ``name`` (`relay tune`'s `tune.name`, e.g. smoke-sweep), in any
    experiment of the tracking store; None when there is none."""
    if "'" in name:  # not a name relay tune accepts, and it would end the filter's string
        return None
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    query = f"tags.`{TAG_SWEEP}` = '{name}' and tags.`{TAG_KIND}` = 'sweep'"
    found = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if experiments and found else None


def trial_runs(client: Any, sweep_run: Any) -> list[str]:
    """The Relay run ids of the sweep's trials (the pipeline runs nested under its MLflow run), in the order they started."""
    query = f"tags.`{TAG_PARENT}` = '{sweep_run.info.run_id}' and tags.`{TAG_KIND}` = 'pipeline'"
    found = client.search_runs(
        [sweep_run.info.experiment_id], query, order_by=["attributes.start_time ASC"], max_results=5000
    )
    return [run.data.tags.get(TAG_PIPELINE_RUN, run.info.run_name) for run in found]


def sweep_run_problem(client: Any, sweep_run: Any, given: str, options: str = "") -> str:
    """What `relay generations` says of a sweep's MLflow run id or name: whose it is, its trials, and the command for one.

    Why: a sweep's parent run holds the search (settings, trials table, best values), not
    generations, so it has no table; the id, printed by MLflow's UI beside the trials, got "the
    tracking store here does not know it", which it does. Each trial is a pipeline run with its own
    table. ``options``: the store options the user gave, repeated in the commands shown.
    """
    tags = sweep_run.data.tags
    sweep = tags.get(TAG_SWEEP, sweep_run.info.run_name)
    trials = trial_runs(client, sweep_run)
    what = (
        f"run_id: {given} is the MLflow run of sweep {sweep!r} (relay tune), which holds"
        if given == sweep_run.info.run_id
        else f"run_id: {given} is the name of a sweep (relay tune), not of a run: its MLflow run holds"
    )
    if not trials:
        return (
            f"{what} the search, not generations, and no trial of it is tracked yet; once one is, "
            f"`relay runs{options}` lists it and `relay generations TRIAL{options}` shows its table"
        )
    named = ", ".join(trials[:TRIALS_NAMED]) + (
        f" and {len(trials) - TRIALS_NAMED} more (`relay runs{options}` lists them)"
        if len(trials) > TRIALS_NAMED
        else ""
    )
    example = tags.get(TAG_BEST_RUN) if tags.get(TAG_BEST_RUN) in trials else trials[0]
    which = "its best trial" if example == tags.get(TAG_BEST_RUN) else "e.g."
    return (
        f"{what} the search, not generations; each of its {len(trials)} trial(s) is a pipeline run with its own table: {named}; "
        f"pass one, {which}: relay generations {example}{options}{_trials_table(tags)}"
    )


def _trials_table(tags: Mapping[str, str]) -> str:
    """Where the sweep's own table of trials is, when it is on this machine (a finished sweep writes it)."""
    table = Path(tags.get(TAG_SWEEP_OUTPUT) or ".") / "trials.csv"
    return f" (the sweep's table of trials: {table})" if tags.get(TAG_SWEEP_OUTPUT) and table.is_file() else ""
