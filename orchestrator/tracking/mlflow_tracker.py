"""Experiment tracking: one MLflow run tree per pipeline run.

Layout: a parent run per pipeline run (name = run id), a ``gen-NN`` child run
per generation, and stage runs nested in their generation (or directly under
the parent for stages outside any generation). All MLflow calls happen on the
driver with explicit run ids (MlflowClient), never through the fluent
"active run" state, so concurrent stages and Ray workers cannot cross wires.
Tracking is a side channel: a failure warns and the pipeline goes on, unless
``strict`` asks for it to stop the run.

This module keeps the tracker's state and its failure guard, and decides when each run of the tree
opens and closes. Its neighbours do the rest: the pipeline run's tags and records (pipeline_run), the
generation and stage runs below it (child_runs), a stage's results (stage_outcome), what a stage read
and wrote (stage_lineage), the tree's keys (run_tree) and the runs a dead driver left open
(interruptions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from orchestrator.config import TrackingSettings, current_directory
from orchestrator.engine.records import StageRecord
from orchestrator.tracking import lineage, pipeline_run, run_command
from orchestrator.tracking.child_runs import ChildRuns
from orchestrator.tracking.common import (
    TAG_PIPELINE_RUN,
    TAG_STATUS,
    default_artifact_location,
    guarded,
    is_unreachable,
    named_step,
    open_experiment,
)
from orchestrator.tracking.descriptions import TAG_NOTE, source_tags, started_with
from orchestrator.tracking.lineage import LineageGraph
from orchestrator.tracking.pipeline_run import END, RELAY_WORD, START, START_CUT_SHORT
from orchestrator.tracking.provenance import provenance_tags
from orchestrator.tracking.registrations import TAG_REGISTERED, RunRegistrations, recorded_entries
from orchestrator.tracking.run_tree import flat_params, metric_points, parent_keys, summary_points
from orchestrator.tracking.stage_lineage import ModelLog, log_lineage
from orchestrator.tracking.stage_outcome import evaluated_model, log_batch, log_files, outcome_tags, start_monitor

logger = logging.getLogger(__name__)

T = TypeVar("T")


class MlflowTracker:
    """Logs the run tree through MlflowClient with explicit run ids.

    The client is created in start_pipeline, not here: MLflow creates a
    sqlite database as soon as a client touches it, and a run rejected by
    validation must leave nothing behind.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str = "relay",
        strict: bool = False,
        artifact_location: str | None = None,
        log_models: bool = True,
        system_metrics: bool = False,
        system_metrics_interval_s: float = 2.0,
        parent_run_id: str | None = None,
        extra_tags: Mapping[str, str] | None = None,
        register_models: bool = True,
        pyfunc_loader: str | None = None,
    ) -> None:
        # pyfunc_loader: the run's pipeline's (PipelineSpec.pyfunc_loader), named in its models' MLmodel files.
        # parent_run_id nests the pipeline run under another run (a Tune sweep); extra_tags
        # (a trial's id and values) go on the pipeline run, and again on reattach.
        # register_models=False logs models without registry versions: a sweep's trials would
        # otherwise move `gen-NN` / `newest` to whichever trial finished last.
        self.register_models = register_models
        self.pyfunc_loader = pyfunc_loader
        self._nest_under = parent_run_id
        self.extra_tags = dict(extra_tags or {})
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.strict = strict
        self.log_models = log_models
        self.system_metrics = system_metrics
        self.system_metrics_interval_s = system_metrics_interval_s
        self.artifact_location = artifact_location or default_artifact_location(tracking_uri)
        self._no_run_facts_yet()
        self._no_runs_yet()
        self.lost_at: str | None = None  # where the store stopped answering (a stage, the run's start or end)
        self._started_in = current_directory()  # now: the command's config path may be relative to it

    def _no_run_facts_yet(self) -> None:
        """What start_pipeline learns from the run's config and command, before it is called."""
        self._lineage = LineageGraph()
        self._pipeline_name = ""
        self._kind: str | None = None  # the config's `pipeline` (crest), for the relay.pipeline tag
        self._image_size: int | None = None
        self._source: dict[str, str] = {}  # mlflow.source.* of every run of the tree: the command's config file
        self._started_with = ""  # ", started with `relay run ...`" in the pipeline run's description, start to end
        self._registrations: RunRegistrations | None = None  # from the parent run on: what this run registered
        self._params: dict[str, str] = {}  # the run's flattened config: the parent's params and each generation's

    def _no_runs_yet(self) -> None:
        """The MLflow side of the tree, empty until start_pipeline opens its experiment and parent run."""
        self._monitors: dict[str, Any] = {}
        self._client: Any = None
        self._experiment_id: str | None = None
        self._run_id: str | None = None
        self._parent: str | None = None
        self._children: ChildRuns | None = None  # made with the parent run: the generation and stage runs below it

    @property
    def parent_run_id(self) -> str | None:
        """The MLflow id of the pipeline's parent run (None before start or after a failure)."""
        return self._parent

    @property
    def store_unreachable(self) -> bool:
        """Whether the tracking store stopped answering during this run (its MLflow record is then incomplete)."""
        return self.lost_at is not None

    def _guard(self, op: str, action: Callable[[], T], where: str) -> T | None:
        """Run one tracking action; warn on failure unless strict; once the store is unreachable, call it no more.

        Every call to a dead server costs MLflow's retries (about 7 s as Relay sets them,
        common.CLIENT_ENV_DEFAULTS); a run that went on calling it after the first failure hung for
        minutes per call once its stages were done. So the first connection failure is said once,
        clearly, and every later action is dropped (strict mode raises instead, as for any failure).
        ``where`` (a stage's name, or the run's start or end) is kept in ``lost_at`` for the run's
        closing lines and its record: `relay resume` fills the MLflow record in once the store answers.
        """
        if self.store_unreachable:
            return None

        def noting_unreachable() -> T:
            try:
                return action()
            except Exception as exc:
                self._note_unreachable(exc, where)
                raise

        return guarded(op, noting_unreachable, self.tracking_uri, self.strict)

    def _note_unreachable(self, error: BaseException, where: str) -> None:
        """Stop calling the store after ``error`` when it says the store cannot be reached; say so once."""
        if self.store_unreachable or not is_unreachable(error):
            return
        self.lost_at = where
        logger.warning(
            "the tracking store %s is unreachable (it stopped answering at %s); Relay stops calling it for this "
            "run, so its MLflow record is incomplete (the run itself goes on unless tracking.strict is set)",
            self.tracking_uri,
            where,
        )

    def start_pipeline(self, run_id: str, pipeline_name: str, config: Mapping[str, Any], resume: bool) -> None:
        """Create (or, on resume, reattach to) the parent run and log the resolved config.

        Calling it again for the same run id is a no-op, so a composition root
        and a helper cannot open two parent runs for one pipeline run. A start that failed (not
        strict) is tracking lost from the start (``lost_at``), so the run's record says its MLflow
        record is incomplete and `relay resume` fills it in: START where no parent run was made
        (the run ended with the browse line of an MLflow run that did not exist), START_CUT_SHORT
        where one was made without its config and params (the run was listed complete).
        """
        if self._parent is not None and self._run_id == run_id:
            return
        if self._guard("start_pipeline", lambda: self._start(run_id, pipeline_name, config, resume), START):
            return
        if self._parent is None:  # not strict: the run goes on without an MLflow run
            self.lost_at = self.lost_at or START
            return
        reachable = self.lost_at is None
        self.lost_at = START_CUT_SHORT
        if reachable:
            pipeline_run.close_cut_short_start(self._client, self._parent, self._run_id)

    def _start(self, run_id: str, pipeline_name: str, config: Mapping[str, Any], resume: bool) -> bool:
        """The pipeline run made or reattached, its config and params logged: True (a failed step raises, named)."""
        with named_step(f"opening experiment {self.experiment!r}"):
            self._client, self._experiment_id = open_experiment(
                self.tracking_uri, self.experiment, self.artifact_location
            )
        self._read_config(run_id, pipeline_name, config)
        command = run_command.read_command(config, run_id)
        self._started_with = started_with(command)
        self._source = source_tags(command)
        own_tags = {**self.extra_tags, **pipeline_run.command_tags(command, run_id), **self._source}
        with named_step(f"looking for MLflow runs of {run_id}"):
            existing = pipeline_run.find_runs(self._client, self._experiment_id, run_id, "pipeline") if resume else []
        if existing:
            self._resume_run(existing[0].info.run_id, config, command, own_tags)
            return True
        if resume:
            logger.info("no MLflow run found for %s; starting a new one", run_id)
        with named_step("creating the pipeline run"):
            tags = pipeline_run.new_run_tags(
                run_id, self._identity_tags(), self._opening_note(command), own_tags, self._nest_under
            )
            self._adopt_parent(self._client.create_run(self._experiment_id, tags=tags, run_name=run_id).info.run_id)
            self._registrations = RunRegistrations(self._client, pipeline_name, run_id, self._parent)
        self._log_start_record(config, command, only_missing=False)
        return True

    def _read_config(self, run_id: str, pipeline_name: str, config: Mapping[str, Any]) -> None:
        """The run's facts the tree's tags and models need: its id, name, kind, params and image size."""
        self._run_id = run_id
        self._pipeline_name = pipeline_name
        self._kind = config.get("pipeline") if isinstance(config.get("pipeline"), str) else None
        self._params = flat_params(config)  # on resume too: a PBT trial goes on with new values from here
        data = config.get("data")
        self._image_size = data.get("image_size") if isinstance(data, Mapping) else None  # for model signatures

    def _resume_run(
        self,
        parent: str,
        config: Mapping[str, Any],
        command: run_command.RunCommand | None,
        own_tags: Mapping[str, str],
    ) -> None:
        """Reattach to an earlier attempt's pipeline run, retag it, and fill in what its start left out."""
        with named_step(f"reattaching to MLflow run {parent}"):
            self._reattach(parent)
            opening = {TAG_NOTE: self._opening_note(command)}  # not the earlier attempt's end, while it runs
            for key, value in {**self._identity_tags(), **own_tags, **opening}.items():  # older Relay's runs too
                self._client.set_tag(self._parent, key, value)
        self._log_start_record(config, command, only_missing=True)

    def _log_start_record(
        self, config: Mapping[str, Any], command: run_command.RunCommand | None, only_missing: bool
    ) -> None:
        """config.yaml and the params on the pipeline run (``pipeline_run.log_start_record``)."""
        pipeline_run.log_start_record(
            self._client,
            self._parent,
            self._run_id,
            self._params,
            config,
            lambda: pipeline_run.written_locations(config, command, self._started_in, bool(self._nest_under)),
            only_missing,
        )

    def _adopt_parent(self, parent: str) -> None:
        """The pipeline run this tracker logs under, and the (empty) record of the runs below it."""
        self._parent = parent
        self._children = ChildRuns(self._experiment_id, self._run_id, parent, self._source, self._params)

    def _identity_tags(self) -> dict[str, str]:
        return pipeline_run.identity_tags(self._kind, self._pipeline_name)

    def _opening_note(self, command: run_command.RunCommand | None) -> str:
        return pipeline_run.opening_note(self._run_id, self._kind, self._pipeline_name, command)

    def _reattach(self, parent: str) -> None:
        """Reuse the parent and generation runs of an earlier attempt of this pipeline run."""
        self._adopt_parent(parent)
        self._client.update_run(parent, status="RUNNING")
        self._client.set_tag(parent, TAG_STATUS, "RUNNING")  # not how the earlier attempt ended
        self._children.adopt(self._client)
        self._lineage.model_ids.update(
            lineage.logged_models_of(self._client, self._experiment_id, self._run_id, TAG_PIPELINE_RUN)
        )
        earlier = self._client.get_run(parent).data.tags.get(TAG_REGISTERED, "")
        self._registrations = RunRegistrations(
            self._client, self._pipeline_name, self._run_id, parent, recorded_entries(earlier)
        )
        log_batch(self._client, parent, tags=provenance_tags())
        logger.info("resuming MLflow run %s (%d generation run(s))", parent, len(self._children.generations))

    def _open_stage(self, stage_name: str, generation: int | None, attempt: int | None) -> None:
        """Open the stage's run for its first attempt in this driver; a retry's number goes on the open run."""
        children = self._children
        if stage_name in children.open_stages:
            children.retag_stage(self._client, stage_name, attempt)
            return
        run = children.open_stages[stage_name] = children.new_stage(self._client, stage_name, generation, attempt)
        if self.system_metrics:
            self._monitors[stage_name] = start_monitor(run, self.system_metrics_interval_s, self.tracking_uri)

    def _stop_monitor(self, stage_name: str) -> None:
        monitor = self._monitors.pop(stage_name, None)
        if monitor is not None:
            monitor.finish()

    def stage_started(self, stage_name: str, generation: int | None, attempt: int | None = None) -> None:
        """Open the stage run now so its duration in the UI is the real one, tagged with the engine's ``attempt``."""
        if self._parent is not None:
            self._guard("stage_started", lambda: self._open_stage(stage_name, generation, attempt), stage_name)

    def stage_finished(self, record: StageRecord) -> None:
        """Log a stage's outcome on its run, its generation run and the parent."""
        if self._parent is not None:
            self._guard("stage_finished", lambda: self._finish(record), record.stage)

    def _finish(self, record: StageRecord) -> None:
        self._lineage.add(record.inputs, record.outputs)
        self._stop_monitor(record.stage)
        children = self._children
        if record.cache_hit and (record.stage, record.fingerprint) in children.finished:
            logger.debug("stage %s already tracked as finished; not logging it again", record.stage)
            return
        run = children.open_stages.get(record.stage) or children.new_stage(
            self._client, record.stage, record.generation, record.attempts or None, cached=record.cache_hit
        )
        children.open_stages[record.stage] = run  # until it is terminated: close_open_stages must still know it
        try:
            self._log_outcome(run, record)
        except Exception as exc:
            # Closed even when logging failed (a model MLflow refused): never RUNNING under a closed parent.
            # Not when the store is gone: that call would cost the client's retries a second time before
            # the warning (14 s, not 7), and `relay resume` closes the run when the store answers again.
            if not is_unreachable(exc):
                children.close_stage(self._client, record.stage, run, record.status)
            raise
        children.close_stage(self._client, record.stage, run, record.status)
        if record.status == "FINISHED":  # a later run() of this pipeline run sees it as a cache hit: log once
            children.finished[(record.stage, record.fingerprint)] = run

    def _log_outcome(self, run: str, record: StageRecord) -> None:
        """Everything a finished stage logs before its run is closed: tags, metrics, files, lineage, models."""
        points = summary_points({**record.metrics, "duration_s": record.duration_s}, record.series)
        scored = evaluated_model(record, self._lineage.model_ids)
        log_batch(self._client, run, outcome_tags(record), points, model_id=scored, model_keys=record.metrics)
        log_files(self._client, run, record, self._children.generations, self._parent)
        if record.status == "FINISHED":
            self._log_lineage(run, record)
        placed = parent_keys(record.stage, record.generation)
        if placed is None:
            return
        step, prefix = placed
        prefixed = {f"{prefix}/{k}": v for k, v in record.metrics.items()}
        if record.generation is not None:
            generation_run = self._children.generation(self._client, record.generation)
            log_batch(self._client, generation_run, metrics=metric_points(prefixed, step))
        log_batch(self._client, self._parent, metrics=metric_points(prefixed, step))
        if record.generation is not None and record.status == "FAILED":
            self._children.failed_generations.add(record.generation)

    def _log_lineage(self, run: str, record: StageRecord) -> None:
        """What the stage read and wrote, on its run and its generation's (``stage_lineage.log_lineage``)."""
        runs = [run] if record.generation is None else [run, self._children.generations[record.generation]]
        model_log = ModelLog(
            client=self._client,
            experiment_id=self._experiment_id,
            run_id=self._run_id,
            parent=self._parent,
            tags=self._identity_tags(),
            pipeline_name=self._pipeline_name,
            image_size=self._image_size,
            pyfunc_loader=self.pyfunc_loader,
            graph=self._lineage,
            log_models=self.log_models,
            registrations=self._registrations if self.register_models else None,
        )
        log_lineage(model_log, runs, record)

    def end_pipeline(self, status: str) -> None:
        """Close generation runs and the parent; ``status`` is FINISHED, STOPPED, FAILED, KILLED or PAUSED.

        MLflow has no status for a run that ended early: STOPPED (`--stop-after`), KILLED (Ctrl-C,
        `relay stop`) and PAUSED all close KILLED, and the parent's ``relay.status`` tag says which,
        in the words of `relay runs` (KILLED reads INTERRUPTED there): the UI could not tell a run
        stopped on purpose from an interrupted one.

        PAUSED is a Tune trial that its scheduler took off its CPUs between
        generations: every generation it ran is complete, so their runs are
        FINISHED, and the parent is KILLED until the trial resumes (RUNNING
        again) or the sweep closes it with its final status.
        """
        if self._parent is not None:
            self._guard("end_pipeline", lambda: self._end(status), END)

    def _end(self, status: str) -> None:
        for stage_name in list(self._monitors):
            self._stop_monitor(stage_name)
        self._children.close_open_stages(self._client)
        # The statuses before the summary files: `relay stop` (Ray's SIGTERM, then SIGKILL seconds later)
        # may leave time for a few writes only, and a run left RUNNING misleads more than a missing table.
        final = {"FINISHED": "FINISHED", "FAILED": "FAILED"}.get(status, "KILLED")
        self._children.close_generations(self._client, status)
        self._client.set_tag(self._parent, TAG_STATUS, RELAY_WORD.get(status, status))
        self._client.set_terminated(self._parent, status=final)
        if status == "FINISHED":  # aliases move only now: a stopped, interrupted or failed run leaves them
            self._guard("own aliases", self._registrations.point_aliases, END)
            self._guard("stale aliases", self._registrations.drop_stale_aliases, END)
        self._guard("summary", lambda: self._log_summary(RELAY_WORD.get(status, status)), END)

    def _log_summary(self, status: str) -> None:
        """The per-generation table on the parent and in its description (``pipeline_run.log_summary``)."""
        heading = (
            f"Relay run `{self._run_id}`: pipeline `{self._kind or '?'}` ({self._pipeline_name})"
            f"{self._started_with}, {status}."
        )
        pipeline_run.log_summary(self._client, self._parent, self._run_id, heading)


def mlflow_tracker(
    tracking_uri: str,
    settings: TrackingSettings,
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
    pyfunc_loader: str | None = None,
) -> MlflowTracker:
    """The MlflowTracker a config's ``tracking:`` section asks for: `relay run` and every Tune trial track alike.

    ``parent_run_id`` and ``extra_tags`` are what only a sweep adds (its run, a trial's id and values);
    a sweep's trials log their models but do not register them (`relay run best.yaml` does).
    ``pyfunc_loader``: the pipeline spec's, which its logged models' MLmodel files name.
    """
    return MlflowTracker(
        tracking_uri,
        settings.experiment,
        strict=settings.strict,
        log_models=settings.log_models,
        system_metrics=settings.system_metrics,
        system_metrics_interval_s=settings.system_metrics_interval_s,
        parent_run_id=parent_run_id,
        extra_tags=extra_tags,
        register_models=parent_run_id is None,
        pyfunc_loader=pyfunc_loader,
    )
