"""Experiment tracking: one MLflow run tree per pipeline run.

Layout: a parent run per pipeline run (name = run id), a ``gen-NN`` child run
per generation, and stage runs nested in their generation (or directly under
the parent for stages outside any generation). All MLflow calls happen on the
driver with explicit run ids (MlflowClient), never through the fluent
"active run" state, so concurrent stages and Ray workers cannot cross wires.
Tracking is a side channel: a failure warns and the pipeline goes on, unless
``strict`` asks for it to stop the run.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.config import TrackingSettings, current_directory, dotted
from orchestrator.dag import TAGS_FILE
from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking import lineage, report, run_command
from orchestrator.tracking.common import (
    TAG_CACHE_HIT,
    TAG_FINGERPRINT,
    TAG_GENERATION,
    TAG_KIND,
    TAG_NAME,
    TAG_PARENT,
    TAG_PIPELINE,
    TAG_PIPELINE_RUN,
    TAG_STAGE,
    TAG_STATUS,
    default_artifact_location,
    guarded,
    is_unreachable,
    log_params,
    mlflow_client,
    named_step,
    open_experiment,
)
from orchestrator.tracking.descriptions import TAG_NOTE, closing_note, generation_note, source_tags, started_with
from orchestrator.tracking.lineage import MODEL, LineageGraph
from orchestrator.tracking.provenance import provenance_tags
from orchestrator.tracking.reading import generation_rows
from orchestrator.tracking.registrations import TAG_REGISTERED, RunRegistrations, recorded_entries

logger = logging.getLogger(__name__)

T = TypeVar("T")
CUT_SHORT = ("KILLED", "STOPPED")  # statuses whose unfinished generation runs end KILLED too
RELAY_WORD = {"KILLED": "INTERRUPTED"}  # the parent's relay.status tag reads as `relay runs` does
TAG_ATTEMPT = "relay.attempt"  # on a stage run: 1, then 2 for the run a resume opened after an interrupted one
INTERRUPTED = "INTERRUPTED"  # relay.status of a run cut off mid-way (Ctrl-C, SIGKILL), as `relay runs` words it
EVALUATION_ROLE = "evaluate"  # the stage role whose metrics score the model it read (``_evaluated_model``)
PROBE_ROLE = "probe"  # a linear probe's role: its score is a result even outside every generation
GENERATION_PARAM = "generation"  # a generation run's index among its params: a column of MLflow's compare view
START, END = "the run's start", "the run's end"  # where the store stopped answering, outside any stage
START_CUT_SHORT = "the run's start (after its MLflow run was made)"  # no config.yaml or params: a partial start
CONFIG_ARTIFACT = "config.yaml"  # the pipeline run's rerunnable config (run_command.rerunnable_yaml)


def metric_prefix(stage_name: str) -> str:
    """Key prefix for a stage's metrics on generation and parent runs.

    The last path segment (``g03/evaluate`` -> ``evaluate``), so the same
    metric lines up across generations on the parent's step axis.
    """
    return stage_name.rsplit("/", 1)[-1]


def parent_keys(stage_name: str, generation: int | None) -> tuple[int, str] | None:
    """(step, key prefix) of a stage's metrics on the pipeline run, or None where they stay on the stage's own run.

    A generation's stage logs at step = generation under its role (``evaluate/balanced_accuracy``).
    A probe outside every generation (``pretext/probe``, the pretext encoder's linear probe) keeps
    its whole name (``pretext/probe/balanced_accuracy``: a `probe: [g00/train]` logs
    ``probe/balanced_accuracy`` at the same step) at step 0, so it reads as the first generation's
    row, the one its encoder starts. Why: its score reached only its own stage run, so neither the
    pipeline run nor a table showed what README sells the pretext config for. The other stages
    outside the generations (the split's counts, the pretraining's loss) are bookkeeping: they stay
    on their own run.
    """
    if generation is not None:
        return generation, metric_prefix(stage_name)
    if metric_prefix(stage_name) == PROBE_ROLE:
        return 0, stage_name
    return None


def is_generation_stage(stage_name: str, generation: int | None) -> bool:
    """Whether the stage is its generation's own (``g01/train``), not a side branch placed in it (``kd/train``).

    Builders put comparison baselines (``kd/``, ``baseline/``, ``finetune/``, ``joint/``) in a
    generation so their metrics land beside the generation's; only the ``gNN/`` stages make the
    model and plots that ``gen-NN`` stands for.
    """
    return generation is not None and stage_name.startswith(f"g{generation:02d}/")


def file_role(stage_name: str, generation: int | None) -> str:
    """The folder of a stage's files on its generation run and the key of its plots on the parent.

    A generation's own stage writes under its role (``evaluate/per_class.png``); a side branch
    keeps its whole name (``kd/evaluate/per_class.png``), so its plot neither replaces the
    generation's on ``gen-NN`` nor adds a second image at the same step on the parent.
    """
    return metric_prefix(stage_name) if is_generation_stage(stage_name, generation) else stage_name


def model_aliases(stage_name: str, generation: int) -> list[str]:
    """Aliases for a model a stage of ``generation`` wrote, before ``newest`` is decided.

    ``gen-NN`` names the generation's own model (README: ``init.source: models:/NAME@gen-00``);
    a side branch's model gets its role in front (``kd-gen-01``), so it never takes that name.
    """
    if is_generation_stage(stage_name, generation):
        return [lineage.model_alias(generation)]
    role = re.sub(r"[^\w-]", "-", stage_name.split("/", 1)[0])
    return [f"{role}-{lineage.model_alias(generation)}"]


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
        self._lineage = LineageGraph()
        self._monitors: dict[str, Any] = {}
        self._pipeline_name = ""
        self._kind: str | None = None  # the config's `pipeline` (crest), for the relay.pipeline tag
        self._image_size: int | None = None
        self.artifact_location = artifact_location or default_artifact_location(tracking_uri)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._run_id: str | None = None
        self._parent: str | None = None
        self._gen_runs: dict[int, str] = {}
        self._reopened: set[int] = set()  # generation runs set RUNNING by this attempt (created or reattached)
        self._stage_runs: dict[str, str] = {}
        self._stage_attempts: dict[str, int] = {}  # stage name -> MLflow stage runs opened for it in this run
        self._source: dict[str, str] = {}  # mlflow.source.* of every run of the tree: the command's config file
        self._started_with = ""  # ", started with `relay run ...`" in the pipeline run's description, start to end
        self._finished_before: dict[tuple[str, str], str] = {}
        self._failed_gens: set[int] = set()
        self._registrations: RunRegistrations | None = None  # from the parent run on: what this run registered
        self._params: dict[str, str] = {}  # the run's flattened config: the parent's params and each generation's
        self.lost_at: str | None = None  # where the store stopped answering (a stage, the run's start or end)
        self._started_in = current_directory()  # now: the command's config path may be relative to it

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
            self._close_cut_short_start()

    def _start(self, run_id: str, pipeline_name: str, config: Mapping[str, Any], resume: bool) -> bool:
        """The pipeline run made or reattached, its config and params logged: True (a failed step raises, named)."""
        with named_step(f"opening experiment {self.experiment!r}"):
            self._client, self._experiment_id = open_experiment(
                self.tracking_uri, self.experiment, self.artifact_location
            )
        self._run_id = run_id
        self._pipeline_name = pipeline_name
        self._kind = config.get("pipeline") if isinstance(config.get("pipeline"), str) else None
        self._params = _flatten(config)  # on resume too: a PBT trial goes on with new values from here
        data = config.get("data")
        self._image_size = data.get("image_size") if isinstance(data, Mapping) else None  # for model signatures
        command = run_command.read_command(config, run_id)
        self._started_with = started_with(command)
        self._source = source_tags(command)
        own_tags = {**self.extra_tags, **self._command_tags(command, run_id), **self._source}
        with named_step(f"looking for MLflow runs of {run_id}"):
            existing = self._find_runs(run_id, "pipeline") if resume else []
        if existing:
            with named_step(f"reattaching to MLflow run {existing[0].info.run_id}"):
                self._reattach(existing[0].info.run_id)
                opening = {TAG_NOTE: self._opening_note(command)}  # not the earlier attempt's end, while it runs
                for key, value in {**self._identity_tags(), **own_tags, **opening}.items():  # older Relay's runs too
                    self._client.set_tag(self._parent, key, value)
            self._log_start_record(config, command, only_missing=True)
            return True
        if resume:
            logger.info("no MLflow run found for %s; starting a new one", run_id)
        with named_step("creating the pipeline run"):
            self._parent = self._client.create_run(
                self._experiment_id, tags=self._new_run_tags(command, own_tags), run_name=run_id
            ).info.run_id
            self._registrations = RunRegistrations(self._client, pipeline_name, run_id, self._parent)
        self._log_start_record(config, command, only_missing=False)
        return True

    def _new_run_tags(self, command: run_command.RunCommand | None, own_tags: Mapping[str, str]) -> dict[str, str]:
        """The tags a new pipeline run is created with."""
        return {
            TAG_PIPELINE_RUN: self._run_id,
            **self._identity_tags(),
            TAG_KIND: "pipeline",
            **provenance_tags(),
            TAG_NOTE: self._opening_note(command),
            **own_tags,
            **({TAG_PARENT: self._nest_under} if self._nest_under else {}),
        }

    def _log_start_record(
        self, config: Mapping[str, Any], command: run_command.RunCommand | None, only_missing: bool
    ) -> None:
        """config.yaml and the params on the pipeline run; ``only_missing``: those an earlier start left out.

        Why on reattach: a start cut short (START_CUT_SHORT) left the run without them, and `relay
        resume` is what fills its record in. Only what is missing: a param once logged cannot change
        (a PBT trial goes on with new values), and the first attempt's config.yaml stays.
        """
        params, has_config = self._params, False
        if only_missing:
            with named_step(f"reading what MLflow run {self._parent} holds"):
                params, has_config = self._missing_params(), self._has_artifact(CONFIG_ARTIFACT)
        if not has_config:
            text = run_command.rerunnable_yaml(config, self._written_locations(config, command), self._run_id)
            with named_step(f"logging {CONFIG_ARTIFACT} to MLflow run {self._parent}"):
                self._client.log_text(self._parent, text, CONFIG_ARTIFACT)
        if params:
            with named_step(f"logging {len(params)} params to MLflow run {self._parent}"):
                log_params(self._client, self._parent, params)

    def _missing_params(self) -> dict[str, str]:
        """The run's params that its pipeline run lacks (keys as ``log_params`` cuts them)."""
        from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH

        logged = self._client.get_run(self._parent).data.params
        return {k: v for k, v in self._params.items() if k[:MAX_ENTITY_KEY_LENGTH] not in logged}

    def _has_artifact(self, path: str) -> bool:
        return any(item.path == path for item in self._client.list_artifacts(self._parent))

    def _close_cut_short_start(self) -> None:
        """End FAILED the pipeline run a start cut short left RUNNING, its description saying why; a failure only logs.

        Relay calls the store no more in this attempt (``lost_at``), so without this the run read RUNNING
        for good in the UI, with no word of its missing config and params; `relay resume` reattaches to it.
        """
        note = (
            f"Relay run `{self._run_id}`: its tracking start failed part-way (the driver's log says where), so this "
            f"MLflow run lacks its {CONFIG_ARTIFACT} or params and the rest of the run; "
            f"`relay resume {self._run_id}` fills it in."
        )
        try:
            self._client.set_tag(self._parent, TAG_NOTE, note)
            self._client.set_terminated(self._parent, status="FAILED")
        except Exception as exc:
            logger.debug("could not close MLflow run %s after its start failed: %s", self._parent, exc)

    def _identity_tags(self) -> dict[str, str]:
        """``relay.pipeline``: the pipeline kind (`crest`), where the config says it; ``relay.name``: its name.

        Why: the pipeline run held the name in relay.pipeline, where `relay runs` and the Ray job's
        metadata hold the kind, so filtering MLflow by tags.relay.pipeline = 'crest' found nothing.
        """
        return {**({TAG_PIPELINE: self._kind} if self._kind else {}), TAG_NAME: self._pipeline_name}

    def _opening_note(self, command: run_command.RunCommand | None) -> str:
        """The pipeline run's description until it ends (``closing_note`` then puts its table in); again on resume."""
        return (
            f"Relay run `{self._run_id}`: pipeline `{self._kind or '?'}` ({self._pipeline_name}){started_with(command)}. "
            "Its per-generation table is written here when the run ends."
        )

    @staticmethod
    def _command_tags(command: run_command.RunCommand | None, run_id: str) -> dict[str, str]:
        """``relay.overrides``: what the command line changed, in the runs table (none known: no tag)."""
        if command is None:
            return {}
        return {run_command.TAG_OVERRIDES: run_command.overrides_tag(command.overrides, run_id)}

    def _written_locations(
        self, config: Mapping[str, Any], command: run_command.RunCommand | None
    ) -> dict[tuple[str, str], Any] | None:
        """The store locations the user wrote, for the MLflow run's config.yaml (None: unknown, left null there).

        From the command's config file and overrides; a sweep's trial has no command, and its config
        was built from the sweep's file as written (never resolved), so it is its own source.
        """
        if command is not None:
            return run_command.written_locations(command, self._started_in)
        return run_command.locations_in(config) if self._nest_under else None

    def _find_runs(self, run_id: str, kind: str) -> list[Any]:
        query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}' and tags.`{TAG_KIND}` = '{kind}'"
        return list(self._client.search_runs([self._experiment_id], query, order_by=["attributes.start_time DESC"]))

    def _reattach(self, parent: str) -> None:
        """Reuse the parent and generation runs of an earlier attempt of this pipeline run."""
        self._parent = parent
        self._client.update_run(parent, status="RUNNING")
        self._client.set_tag(parent, TAG_STATUS, "RUNNING")  # not how the earlier attempt ended
        for run in self._find_runs(self._run_id, "generation"):
            self._gen_runs.setdefault(int(run.data.tags[TAG_GENERATION]), run.info.run_id)
        stage_runs = self._find_runs(self._run_id, "stage")
        self._stage_attempts.update(attempts_so_far(stage_runs))
        for run in stage_runs:
            if run.info.status in ("RUNNING", "KILLED"):  # its driver died mid-stage: that attempt will never finish
                self._mark_interrupted(run)
            if run.info.status == "FINISHED":
                key = (run.data.tags[TAG_STAGE], run.data.tags.get(TAG_FINGERPRINT, ""))
                self._finished_before.setdefault(key, run.info.run_id)
        self._lineage.model_ids.update(
            lineage.logged_models_of(self._client, self._experiment_id, self._run_id, TAG_PIPELINE_RUN)
        )
        earlier = self._client.get_run(parent).data.tags.get(TAG_REGISTERED, "")
        self._registrations = RunRegistrations(
            self._client, self._pipeline_name, self._run_id, parent, recorded_entries(earlier)
        )
        self._log(parent, tags=provenance_tags())
        logger.info("resuming MLflow run %s (%d generation run(s))", parent, len(self._gen_runs))

    def _mark_interrupted(self, run: Any) -> None:
        """Close a stage run a dead driver left RUNNING, or tag one closed KILLED without saying why."""
        if run.info.status == "RUNNING":
            self._client.set_terminated(run.info.run_id, status="KILLED")
        if TAG_STATUS not in run.data.tags:
            self._client.set_tag(run.info.run_id, TAG_STATUS, INTERRUPTED)

    def _gen_run(self, generation: int) -> str:
        """The generation's run, created on first use."""
        if generation not in self._gen_runs:
            tags = {
                TAG_PARENT: self._parent,
                TAG_PIPELINE_RUN: self._run_id,
                TAG_KIND: "generation",
                TAG_GENERATION: str(generation),
                TAG_NOTE: f"Generation {generation} of Relay run `{self._run_id}`.",
                **self._source,
            }
            run = self._client.create_run(self._experiment_id, tags=tags, run_name=f"gen-{generation:02d}")
            log_params(self._client, run.info.run_id, generation_params(self._params, generation))
            self._gen_runs[generation] = run.info.run_id
            self._reopened.add(generation)
        elif generation not in self._reopened:  # an earlier attempt's: running again, whatever it ended as
            self._reopened.add(generation)
            self._client.update_run(self._gen_runs[generation], status="RUNNING")
            self._client.set_tag(self._gen_runs[generation], TAG_STATUS, "RUNNING")
        return self._gen_runs[generation]

    def _new_stage_run(self, stage_name: str, generation: int | None) -> str:
        """A stage's run, tagged with its attempt: an interrupted attempt's run and its resume's read apart."""
        parent = self._parent if generation is None else self._gen_run(generation)
        attempt = self._stage_attempts.get(stage_name, 0) + 1
        self._stage_attempts[stage_name] = attempt
        tags = {
            TAG_PARENT: parent,
            TAG_PIPELINE_RUN: self._run_id,
            TAG_KIND: "stage",
            TAG_STAGE: stage_name,
            TAG_ATTEMPT: str(attempt),
            **self._source,
        }
        if generation is not None:
            tags[TAG_GENERATION] = str(generation)
        return self._client.create_run(self._experiment_id, tags=tags, run_name=stage_name).info.run_id

    def _open_stage(self, stage_name: str, generation: int | None) -> None:
        self._stage_runs[stage_name] = self._new_stage_run(stage_name, generation)
        if self.system_metrics:
            self._monitors[stage_name] = self._start_monitor(self._stage_runs[stage_name])

    def _start_monitor(self, run: str) -> Any:
        """Sample this machine (CPU, memory, disk, network, GPU) into the stage run while the stage runs.

        The stage itself runs in a Ray worker; on a single node that worker
        shares this machine, so these are the stage's resources plus the
        driver's. On a cluster they describe the head node only. A stage
        shorter than one interval logs nothing: the first sample is logged
        after one interval.
        """
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run,
            sampling_interval=self.system_metrics_interval_s,
            samples_before_logging=1,
            tracking_uri=self.tracking_uri,
        )
        monitor.start()
        return monitor

    def _stop_monitor(self, stage_name: str) -> None:
        monitor = self._monitors.pop(stage_name, None)
        if monitor is not None:
            monitor.finish()

    def stage_started(self, stage_name: str, generation: int | None) -> None:
        """Open the stage run now so its duration in the UI is the real one."""
        if self._parent is not None:
            self._guard("stage_started", lambda: self._open_stage(stage_name, generation), stage_name)

    def stage_finished(self, record: StageRecord) -> None:
        """Log a stage's outcome on its run, its generation run and the parent."""
        if self._parent is not None:
            self._guard("stage_finished", lambda: self._finish(record), record.stage)

    def _finish(self, record: StageRecord) -> None:
        self._lineage.add(record.inputs, record.outputs)
        self._stop_monitor(record.stage)
        if record.cache_hit and (record.stage, record.fingerprint) in self._finished_before:
            logger.debug("stage %s already tracked as finished; not logging it again", record.stage)
            return
        run = self._stage_runs.get(record.stage) or self._new_stage_run(record.stage, record.generation)
        self._stage_runs[record.stage] = run  # until it is terminated: _close_open_stages must still know it
        try:
            self._log_outcome(run, record)
        except Exception as exc:
            # Closed even when logging failed (a model MLflow refused): never RUNNING under a closed parent.
            # Not when the store is gone: that call would cost the client's retries a second time before
            # the warning (14 s, not 7), and `relay resume` closes the run when the store answers again.
            if not is_unreachable(exc):
                self._close_stage_run(record.stage, run, record.status)
            raise
        self._close_stage_run(record.stage, run, record.status)
        if record.status == "FINISHED":  # a later run() of this pipeline run sees it as a cache hit: log once
            self._finished_before[(record.stage, record.fingerprint)] = run

    def _close_stage_run(self, stage_name: str, run: str, status: str) -> None:
        self._client.set_terminated(run, status=status)
        del self._stage_runs[stage_name]

    def _log_outcome(self, run: str, record: StageRecord) -> None:
        """Everything a finished stage logs before its run is closed: tags, metrics, files, lineage, models."""
        tags = {
            TAG_FINGERPRINT: record.fingerprint,
            TAG_CACHE_HIT: str(record.cache_hit).lower(),
            TAG_STATUS: record.status,
        }
        if record.error:
            tags["relay.error"] = record.error[:5000]
        points = _summary_points({**record.metrics, "duration_s": record.duration_s}, record.series)
        self._log(run, tags=tags, metrics=points, model_id=self._evaluated_model(record), model_keys=record.metrics)
        self._log_files(run, record)
        if record.status == "FINISHED":
            self._log_lineage(run, record)
        placed = parent_keys(record.stage, record.generation)
        if placed is None:
            return
        step, prefix = placed
        prefixed = {f"{prefix}/{k}": v for k, v in record.metrics.items()}
        if record.generation is not None:
            self._log(self._gen_run(record.generation), metrics=_points(prefixed, step))
        self._log(self._parent, metrics=_points(prefixed, step))
        if record.generation is not None and record.status == "FAILED":
            self._failed_gens.add(record.generation)

    def _evaluated_model(self, record: StageRecord) -> str | None:
        """The LoggedModel an evaluation stage (``gNN/evaluate``, ``kd/evaluate``) scored, or None.

        Its metrics are linked to that model (MLflow 3 model metrics), so the experiment's model list
        shows each generation's balanced accuracy and ``search_logged_models(filter_string=
        "metrics.balanced_accuracy > 0.9")`` finds models by it; unlinked, every LoggedModel had none.
        The model is the one model artifact the stage read, logged (or linked) when its train stage
        finished, which the tracker's one queue orders before the evaluation.
        """
        if metric_prefix(record.stage) != EVALUATION_ROLE or record.status != "FINISHED":
            return None
        scored = [self._lineage.model_ids[name] for name in record.inputs if name in self._lineage.model_ids]
        return scored[0] if len(scored) == 1 else None

    def _log_files(self, run: str, record: StageRecord) -> None:
        """Plots and tables on the stage run, and again on the generation run under the stage's role.

        The copy on ``gen-NN`` (``evaluate/per_class.png``, ``rebalance/picks.csv``) is
        what a user opening a generation sees without digging into its stage runs. A plot is
        also logged on the pipeline run as an image with step = generation (key
        ``evaluate/per_class``), so the UI steps through the generations on one page. A side
        branch's files keep their stage name (``kd/evaluate/per_class.png``): see ``file_role``.
        """
        for name, local in record.files.items():
            if name == TAGS_FILE:
                self._log_stage_tags(run, record, local)
                continue
            self._client.log_artifact(run, local)
            if record.generation is None:
                continue
            role = file_role(record.stage, record.generation)
            self._client.log_artifact(self._gen_runs[record.generation], local, role)
            if name.endswith(".png"):
                self._log_step_image(local, f"{role}/{Path(name).stem}", record.generation)

    def _log_stage_tags(self, run: str, record: StageRecord, local: str) -> None:
        """A stage's text results (its ``TAGS_FILE``) as tags on its run, its generation's and the pipeline's.

        The pipeline run carries them too, so the runs table can show them (``domain.chosen_source``):
        a metric holds a number only, and a source chosen by name read as an index there.
        """
        try:
            found = json.loads(Path(local).read_text())
        except (OSError, ValueError) as exc:
            logger.warning("could not read %s's tags from %s: %s", record.stage, local, exc)
            return
        if not isinstance(found, dict):
            logger.warning("%s's %s is not a JSON object of tags; not logged", record.stage, TAGS_FILE)
            return
        tags = {str(key): str(value)[:5000] for key, value in found.items()}
        targets = (
            [run, self._parent] if record.generation is None else [run, self._gen_runs[record.generation], self._parent]
        )
        for target in targets:
            self._log(target, tags=tags)

    def _log_step_image(self, local: str, key: str, generation: int) -> None:
        """One generation's plot on the pipeline run, at step = generation; an unreadable image only warns."""
        import mlflow

        try:
            image = mlflow.Image(local)
        except (OSError, ValueError) as exc:  # the file itself is logged already; only the stepped view is lost
            logger.warning("could not read %s as an image for the pipeline run's %s: %s", local, key, exc)
            return
        self._client.log_image(self._parent, image, key=key, step=generation, synchronous=True)

    def _log_lineage(self, run: str, record: StageRecord) -> None:
        """Datasets and models the stage read as its inputs; the models it wrote logged and registered.

        The generation run shows the datasets, and the models its own stage read, so gen-NN reads
        "trained on these picks, taught by that model, started from that one" (``_tag_models_read``).
        """
        runs = [run] if record.generation is None else [run, self._gen_runs[record.generation]]
        read = self._lineage.models_read(record.inputs, input_roles(record))
        read_ids = self._logged_ids(read.all)
        datasets = self._lineage.datasets_in(record.inputs)
        models = [a for a in record.outputs.values() if a.lineage == MODEL]
        context = metric_prefix(record.stage)
        lineage.log_inputs(self._client, runs[:1], datasets, read_ids, context)
        lineage.log_inputs(self._client, runs[1:], datasets, read_ids if models else [], context)
        own = models and is_generation_stage(record.stage, record.generation)
        if models:  # a branch's (`baseline/train` in gen-01) would overwrite what its generation's own stage read
            self._tag_models_read(runs if own else runs[:1], read)
        if own:
            note = generation_note(self._run_id, record.generation, models, list(read.teachers))
            self._client.set_tag(runs[1], TAG_NOTE, note + started_from(read.starts))
        if self.log_models:
            for artifact in models:
                self._log_model(runs, artifact, record.stage, record.generation)

    def _tag_models_read(self, runs: list[str], read: lineage.ModelsRead) -> None:
        """``relay.teacher``: the models that taught the stage; ``relay.init_from``: those whose weights it started from.

        Why apart: every model behind a stage's inputs was tagged its teacher, so KE's gen-01 (which
        continues from gen-00's weights) and CReST's g00/train (started from a pretext encoder) named a
        teacher that none of them has.
        """
        for tag, names in ((lineage.TAG_TEACHER, read.teachers), (lineage.TAG_INIT_FROM, read.starts)):
            ids = self._logged_ids(names)
            if ids:
                for target in runs:
                    self._client.set_tag(target, tag, ",".join(f"models:/{i}" for i in ids))

    def _logged_ids(self, names: Iterable[str]) -> list[str]:
        """The LoggedModel ids of those of the model artifacts ``names`` this run logged (or linked)."""
        return [self._lineage.model_ids[name] for name in names if name in self._lineage.model_ids]

    def _log_model(self, runs: list[str], artifact: TrackedArtifact, stage_name: str, generation: int | None) -> None:
        tags = {TAG_PIPELINE_RUN: self._run_id, **self._identity_tags()}
        if generation is not None:
            tags[TAG_GENERATION] = str(generation)
        model = self._logged_before(artifact)
        if model is not None:  # a driver killed after logging it and before closing its stage run
            lineage.link_outputs(self._client, runs[:1], model.model_id, step=generation or 0)  # gen, parent: linked
            if lineage.registered_versions(model):  # and after registering it
                return
        else:
            model = lineage.same_model(self._client, self._experiment_id, artifact, self.pyfunc_loader)  # a cache hit
            if model is None:
                model = lineage.log_model(
                    self._client,
                    self._experiment_id,
                    runs[0],
                    artifact,
                    tags,
                    self._image_size,
                    self._pipeline_name,
                    self.pyfunc_loader,
                )
            self._lineage.model_ids[artifact.name] = model.model_id
            lineage.link_outputs(self._client, [*runs, self._parent], model.model_id, step=generation or 0)
        if generation is not None and self.register_models:
            self._register(model, runs[0], artifact.name, stage_name, generation)

    def _register(self, model: Any, run: str, name: str, stage_name: str, generation: int) -> None:
        """Register ``model`` as a version now; its generation's alias (and ``newest``, on the last generation's
        model) moves onto it when the run finishes (``RunRegistrations.point_aliases``)."""
        (alias,) = model_aliases(stage_name, generation)
        self._registrations.register(model, run, name, stage_name, generation, alias)

    def _logged_before(self, artifact: TrackedArtifact) -> Any:
        """The model an earlier attempt of this run logged for ``artifact`` (same bytes, READY), or None.

        Resuming after a SIGKILL re-tracks a stage whose run the dead driver never closed; its
        model was logged already, and logging it again would leave the first copy orphaned.
        """
        model_id = self._lineage.model_ids.get(artifact.name)
        if model_id is None:
            return None
        model = self._client.get_logged_model(model_id)
        same = model.tags.get(lineage.TAG_DIGEST) == artifact.digest and str(model.status) == "READY"
        return model if same else None

    def _log(
        self,
        run: str,
        tags: Mapping[str, str] | None = None,
        metrics: Iterable[tuple[str, float, int]] = (),
        model_id: str | None = None,
        model_keys: Iterable[str] = (),
    ) -> None:
        """Tags and metrics on ``run`` in one batch; the metrics named in ``model_keys`` also on LoggedModel ``model_id``."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        linked = set(model_keys) if model_id else set()
        items = [Metric(k, float(v), now, step, model_id=model_id if k in linked else None) for k, v, step in metrics]
        tag_items = [RunTag(k, v) for k, v in (tags or {}).items()]
        if items or tag_items:  # MlflowClient.log_batch splits them into batches the store accepts
            self._client.log_batch(run, metrics=items, tags=tag_items)

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
        self._close_open_stages()
        # The statuses before the summary files: `relay stop` (Ray's SIGTERM, then SIGKILL seconds later)
        # may leave time for a few writes only, and a run left RUNNING misleads more than a missing table.
        final = {"FINISHED": "FINISHED", "FAILED": "FAILED"}.get(status, "KILLED")
        others = "KILLED" if status in CUT_SHORT else "FINISHED"  # a generation fails only by its own stages
        word = RELAY_WORD.get(status, status)
        for generation, run in self._gen_runs.items():
            ended = "FAILED" if generation in self._failed_gens else others
            self._client.set_terminated(run, status=ended)
            self._client.set_tag(run, TAG_STATUS, word if ended == "KILLED" else ended)
        self._reopened.clear()
        self._client.set_tag(self._parent, TAG_STATUS, word)
        self._client.set_terminated(self._parent, status=final)
        if status == "FINISHED":  # aliases move only now: a stopped, interrupted or failed run leaves them
            self._guard("own aliases", self._registrations.point_aliases, END)
            self._guard("stale aliases", self._registrations.drop_stale_aliases, END)
        self._guard("summary", lambda: self._log_summary(RELAY_WORD.get(status, status)), END)

    def _close_open_stages(self) -> None:
        """Stage runs opened but never finished (Ctrl-C, a stop mid-stage) end KILLED, not RUNNING forever.

        A stage that ends reports through stage_finished, which closes its run; one still open
        when the pipeline ends was cut off.
        """
        for stage_name, run in list(self._stage_runs.items()):
            self._client.set_terminated(run, status="KILLED")
            self._client.set_tag(run, TAG_STATUS, INTERRUPTED)
            del self._stage_runs[stage_name]

    def _log_summary(self, status: str) -> None:
        """generations.csv and generations.html on the parent: every per-generation metric, one row each.

        The same rows go into the pipeline run's description as a Markdown table, which the run's page
        shows first; a run ended before any generation's result says so there instead.
        """
        rows = generation_rows(self._client, self._parent)
        heading = (
            f"Relay run `{self._run_id}`: pipeline `{self._kind or '?'}` ({self._pipeline_name})"
            f"{self._started_with}, {status}."
        )
        self._client.set_tag(self._parent, TAG_NOTE, closing_note(heading, rows))
        if rows:
            self._client.log_text(self._parent, report.generation_csv(rows), "generations.csv")
            self._client.log_text(
                self._parent, report.generation_html(rows, f"{self._run_id}: per generation"), "generations.html"
            )


def input_roles(record: StageRecord) -> dict[str, str] | None:
    """Input artifact -> its role in the stage's io (``teacher``, ``pretrained``, ``previous``), or None.

    From the record's ``input_roles`` (role -> artifact, as the stage declares them in ``Stage.input_roles``)
    where the runner reports them; a record without them is read as before: every model behind the
    inputs a teacher (``LineageGraph.models_read``).
    """
    roles = record.input_roles
    return None if roles is None else {name: role for role, name in roles.items()}


def started_from(starts: Sequence[str]) -> str:
    """The generation description's sentence on the weights its model started from; "" for none.

    Knowledge Evolution's ``g01/model`` continues from ``g00/model`` (its reset part re-initialised),
    a FixMatch from a pretext encoder: neither is a student of it, and the description said so.
    """
    if not starts:
        return ""
    return f" Its training started from the weights of {', '.join(f'`{name}`' for name in starts)}."


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


def attempts_so_far(stage_runs: Iterable[Any]) -> dict[str, int]:
    """Stage name -> the attempts its earlier MLflow runs count: the highest ``relay.attempt`` tag, or the
    number of its runs where that is more (a run of older Relay has no tag but still was an attempt).

    Why not counted run by run: the runs come newest first, and adding one per run on top of the
    highest tag seen so far made the tags go 1, 2, 4, 7 over repeated resumes.
    """
    runs_of: dict[str, int] = {}
    highest: dict[str, int] = {}
    for run in stage_runs:
        name = run.data.tags.get(TAG_STAGE, run.info.run_name)
        runs_of[name] = runs_of.get(name, 0) + 1
        highest[name] = max(highest.get(name, 0), int(run.data.tags.get(TAG_ATTEMPT) or 0))
    return {name: max(count, highest[name]) for name, count in runs_of.items()}


def _points(metrics: Mapping[str, float], step: int) -> list[tuple[str, float, int]]:
    return [(k, v, step) for k, v in metrics.items()]


def _series_points(series: Iterable[tuple[int, Mapping[str, float]]]) -> list[tuple[str, float, int]]:
    return [(k, v, step) for step, values in series for k, v in values.items()]


def _summary_points(
    metrics: Mapping[str, float], series: Iterable[tuple[int, Mapping[str, float]]]
) -> list[tuple[str, float, int]]:
    """A stage run's curves and its final metrics: a final value of a curve goes at the curve's last step.

    Logged at step 0 it would start the curve with its own end (a training loss that seems to begin
    where it finished); a final value the curve already ends with is not logged twice.
    """
    points = _series_points(series)
    last: dict[str, tuple[int, float]] = {}
    for key, value, step in points:
        if key not in last or step >= last[key][0]:
            last[key] = (step, value)
    finals = [(k, v, last[k][0] if k in last else 0) for k, v in metrics.items() if last.get(k, (0, None))[1] != v]
    return points + finals


def generation_params(params: Mapping[str, str], generation: int) -> dict[str, str]:
    """A generation run's params: the pipeline's (its parent's), with the generation's index.

    Why: the params were on the parent only, so MLflow's compare view of generation runs (of one
    run, or across runs and sweep trials) had no columns to line them up by. Its stages read their
    settings from this config, so the whole of it describes the generation as it describes the run.
    """
    return {**params, GENERATION_PARAM: str(generation)}


def _flatten(config: Mapping[str, Any]) -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} for MLflow params (``config.dotted``, `relay diff`'s keys too)."""
    return {name: str(value) for name, value in dotted(config).items()}


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
