"""The runner: plan, skip what is done, dispatch what is ready, retry by policy.

One loop (kedro's shape): every stage whose inputs exist is fingerprinted;
a stage with a complete, verified manifest under that fingerprint is skipped;
the others are submitted to the executor as ``StageTask``s, and the runner waits
for the first to finish. Where a task runs (this process, a Ray task, Ray Train
workers, an actor pool) is the executor's business, not the runner's. Failures go
through ``decide``, a pure function, so the retry policy is unit-tested without a
cluster. A ledger of stage states is rewritten in the artifact store under
``runs/<run_id>/ledger.json`` after every change (beside the outputs, so a run
can be resumed from any machine that sees the store), and on a final failure
the log says exactly how to resume. A failed stage's traceback (its body's own frames) is logged
once and kept in the run record, ``runs/<run_id>/errors/<stage>.txt``, which the final error names; an attempt
that later finishes the stage removes it, so the record shows only the failures that stand.

A stage is claimed before it is computed (``stage_claims``): a stage another run (a sweep's
twin trial) is computing waits for it, then is a cache hit.

Each stage's outcome and the run's state are ``run_state``'s; what the tracker is told of a stage
that ended, ``stage_reports``'.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from orchestrator.dag import RESUMED_FROM_ROWS, RESUMED_FROM_STEP, Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import Executor
from orchestrator.engine.fingerprint import fingerprint, task_seed
from orchestrator.engine.ledger import JOB_ADDRESS_ENV, Ledger, RunStatus, StageState, done_in, drop_traceback
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.policy import Decision, decide, retries_for
from orchestrator.engine.records import Tracker
from orchestrator.engine.run_state import (
    RunState,
    RunSummary,
    StageOutcome,
    UnrecordedStageError,
    mark_interrupted,
    wall_time,
)
from orchestrator.engine.signals import interrupts_after_the_step, one_more_interrupt_held
from orchestrator.engine.stage_claims import StageClaims
from orchestrator.engine.stage_reports import StageReports
from orchestrator.engine.store_faults import StoreFault, store_fault
from orchestrator.engine.task import StageTask
from orchestrator.errors import (
    ArtifactError,
    PipelineError,
    StageError,
    body_traceback,
    changed_weights_in,
    failure_traceback,
    unreadable_data_in,
)

logger = logging.getLogger(__name__)

# How often a stage another run is computing is looked at again: its claim, then its manifest.
TWIN_POLL_S = 2.0


class Runner:
    """Runs a pipeline's stages through an executor, skipping completed ones.

    ``copies_dir`` is where files of a remote store are copied for the tracker to upload
    (MLflow logs local files only; ``StageReports``); the caller removes it once the tracker is
    done. Without one, the runner removes its own folder of copies when the run ends, however it
    ends. ``store_option`` is how the caller names the store in the resume command it prints
    (`` --artifact-uri URI`` where the store is not the default one a plain `relay resume` would
    open). ``cluster_job``: the run is a
    Ray job or was submitted as one, so its resume advice also names `relay submit --resume`, which a
    run on this machine's own Ray, or one that joined a cluster (`relay resume` rejoins it), has no use for.
    """

    def __init__(
        self,
        store: ArtifactStore,
        executor: Executor,
        tracker: Tracker,
        code_version: str | Mapping[str, str],
        seed: int,
        copies_dir: Path | None = None,
        store_option: str = "",
        cluster_job: bool = False,
        continued_by: str | None = None,
    ) -> None:
        """``code_version``: one version for every stage, or one per stage module (``fingerprint.code_versions``).
        ``continued_by``: the command that continues this run where `relay resume RUN_ID` does not (a sweep's
        trial: `relay tune CONFIG --resume`, as `relay resume` refuses a trial)."""
        self.store = store
        self.executor = executor
        self.tracker = tracker
        self.code_version = code_version
        self.seed = seed
        self.reports = StageReports(store, copies_dir)
        self.claims = StageClaims(store)
        self.store_option = store_option
        self.cluster_job = cluster_job
        self.continued_by = continued_by
        self.ended_as: RunStatus | None = None  # how the last run ended, once its ledger says so

    def _resume_command(self, run_id: str, quote: str = "") -> str:
        """`relay resume RUN_ID` as this run is resumed, with the cluster job's way beside it for a run on a cluster.

        ``quote`` ("`") wraps each command on its own: the whole hint in one pair of backticks made a copy of
        the first command carry the words of the second.
        """
        if self.continued_by is not None:
            return f"{quote}{self.continued_by}{quote}"
        command = f"{quote}relay resume {run_id}{self.store_option}{quote}"
        if not self.cluster_job:
            return command
        address = os.environ.get(JOB_ADDRESS_ENV)  # the cluster `relay submit` sent this job to
        submit = f"relay submit --resume {run_id}{f' --address {address}' if address else ''}"
        return f"{command} (a cluster job: {quote}{submit}{quote})"

    def _way_on(self, error: BaseException, run_id: str) -> str:
        """What to do after the run failed: resume it once the cause is fixed, or, for data that cannot be
        read, start a new run (the fixed data is not what the run started on, and a resume refuses it); for
        `init.source` weights that changed after the run was planned, the two ways the stage's error names."""
        if unreadable_data_in(error) is not None:
            return (
                "Once the data is fixed, start a new run: a resume would refuse the fixed data, since the "
                "run's finished stages read it as it was"
            )
        if changed_weights_in(error) is not None:
            return (
                f"Put back the weights the run was planned with and resume with: {self._resume_command(run_id)}; "
                "or, to train from the new weights, start a new run (relay run)"
            )
        return f"Fix the cause. Resume with: {self._resume_command(run_id)}"

    def run(
        self, pipeline: Pipeline, run_id: str, stop_after: str | None = None, rerun: Collection[str] = ()
    ) -> RunSummary:
        """Run every stage (or up to and including ``stop_after``); raise StageError on failure.

        Stages named in ``rerun`` run even when their outputs are cached (`relay run
        --rerun-from`, `--no-cache`); the others are reused when they can be. The caller (the
        CLI, the composition root) opens and closes the tracker's pipeline run around this
        call; the runner reports stages.
        """
        try:
            return self._run(pipeline, run_id, stop_after, rerun)
        finally:
            self.claims.release_all()
            self.reports.remove_own_copies()

    def _run(self, pipeline: Pipeline, run_id: str, stop_after: str | None, rerun: Collection[str]) -> RunSummary:
        """``run``, with the runner's own folder of copies left for ``run`` to remove."""
        self.ended_as = None
        unknown = sorted(set(rerun) - {s.name for s in pipeline.stages})
        if unknown:
            pipeline.stage(unknown[0])  # the error names the valid stages
        pending = self._targets(pipeline, stop_after)
        ledger = Ledger(
            self.store,
            pipeline.name,
            run_id,
            self.code_version,
            self.seed,
            stop_after,
            generations=_stages_per_generation(pipeline),
        )
        outcomes = {s.name: StageOutcome(generation=s.generation, attempts=ledger.attempts_of(s.name)) for s in pending}
        st = RunState(pipeline, run_id, pending, outcomes, ledger, rerun=frozenset(rerun))
        st.write_ledger(RunStatus.RUNNING)
        try:
            self._loop(st)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM (`relay stop`: Ray raises SystemExit)
            with one_more_interrupt_held():  # the line first: a store slow to take the ledger must not hold it back
                logger.warning("interrupted; resume with: %s", self._resume_command(run_id))
                mark_interrupted(st)
            raise
        except BaseException as exc:
            failed = self._failed(st, exc)
            if failed is exc:
                raise
            raise failed from exc.__cause__
        status = RunStatus.FINISHED if _all_done(pipeline, st.outcomes, ledger) else RunStatus.STOPPED
        with interrupts_after_the_step():  # the ledger and ``ended_as`` agree when a Ctrl-C or SIGTERM comes
            st.write_ledger(status)
            self.ended_as = status
        logger.info(
            "run %s %s: %d executed, %d cached",
            run_id,
            status.value.lower(),
            sum(o.state is StageState.SUCCEEDED for o in st.outcomes.values()),
            sum(o.state is StageState.CACHED for o in st.outcomes.values()),
        )
        return RunSummary(run_id, status, st.outcomes, st.manifests)

    def _failed(self, st: RunState, error: BaseException) -> BaseException:
        """Record a failed run and log how to go on; the error to raise: ``error``, or, when the run
        record could not be updated, the first stage failure with that said (``UnrecordedStageError``)."""
        try:
            st.write_ledger(RunStatus.FAILED)
        except ArtifactError as unwritable:  # no stage failed: the store failed the ledger itself
            logger.warning("could not record the failure in the run's ledger: %s", unwritable)
        if st.failure is None or st.record_lost is None or error is not st.failure:
            logger.error("run %s failed: %s. %s", st.run_id, str(error).rstrip("."), self._way_on(error, st.run_id))
            return error
        failure = st.failure
        lost = UnrecordedStageError(
            failure.stage, failure.cause, failure.attempts, self._unrecorded(st), failure.traceback_at
        )
        logger.error("run %s failed: %s", st.run_id, lost)
        return lost

    def _unrecorded(self, st: RunState) -> str:
        """What a run whose record could not be updated means for `relay runs` and `relay resume`."""
        fault = store_fault(st.record_lost) if st.record_lost is not None else None
        when = "once the store answers" if fault is StoreFault.UNREACHABLE else "once the store can be written"
        return (
            f"the run record (runs/{st.run_id}/ledger.json) could not be updated either, so `relay runs` shows it "
            f"INTERRUPTED (or RUNNING), not FAILED; {when}, {self._resume_command(st.run_id, quote='`')} continues it"
        )

    @staticmethod
    def _targets(pipeline: Pipeline, stop_after: str | None) -> list[Stage]:
        """Stages to run, in declaration order: all, or ``stop_after`` and its upstream."""
        if stop_after is None:
            return list(pipeline.stages)
        wanted = pipeline.upstream(stop_after) | {stop_after}
        return [s for s in pipeline.stages if s.name in wanted]

    def _loop(self, st: RunState) -> None:
        """Dispatch ready stages, settle finished ones; after a failure, drain then raise."""
        while True:
            if st.failure is None:
                self._dispatch_ready(st)
            awaiting = st.failure is None and bool(st.twins)
            if not st.in_flight:
                if not awaiting:
                    break
                self.executor.pause(TWIN_POLL_S)
                continue
            for handle, outcome in self.executor.wait(list(st.in_flight), TWIN_POLL_S if awaiting else None):
                self._settle(st, st.in_flight.pop(handle), outcome)
                st.write_ledger(RunStatus.RUNNING)
        if st.failure is not None:
            raise st.failure from st.failure.cause
        if st.pending:  # unreachable for a validated DAG; guards the loop's invariant
            raise PipelineError([f"stages never became ready: {[s.name for s in st.pending]}"], st.pipeline.name)

    def _dispatch_ready(self, st: RunState) -> None:
        """Skip or submit every stage whose inputs exist; repeat while skips unlock more.

        A stage is claimed first (``stage_claims``), then looked up in the cache: a twin that finished
        between the two left its manifest, and one that is still computing holds the claim, so the
        stage waits for it (``st.twins``) rather than being computed twice.
        """
        progressed = True
        while progressed:
            ready = [s for s in st.pending if all(a in st.refs for a in s.inputs)]
            progressed = False
            for stage in ready:
                fp = self._fingerprint(st, stage)
                if not self.claims.take(fp):
                    self._await_twin(st, stage, fp)
                    continue
                st.pending.remove(stage)
                st.twins.discard(stage.name)
                manifest = None if stage.name in st.rerun else self._cached(stage, fp)
                if manifest is None:
                    self._compute(st, stage, fp)
                else:
                    self.claims.release(fp)
                    self._record_success(st, stage, manifest, cache_hit=True)
                    progressed = True
                st.write_ledger(RunStatus.RUNNING)

    def _fingerprint(self, st: RunState, stage: Stage) -> str:
        """The stage's fingerprint from its inputs' digests, kept in its outcome (the ledger names it)."""
        digests = {a: st.refs[a].digest for a in stage.inputs}
        fp = fingerprint(stage, digests, self._code(stage), self.seed, self.executor.numerics(stage))
        st.outcomes[stage.name].fingerprint = fp
        return fp

    def _await_twin(self, st: RunState, stage: Stage, fp: str) -> None:
        """Leave ``stage`` pending while another run computes it; said once, when the wait starts.

        Said as a warning: a sweep's trials print warnings only, and a trial that sat waiting for another's
        stage said nothing on the sweep's console (its INFO lines are not shown there).
        """
        if stage.name in st.twins:
            return
        st.twins.add(stage.name)
        logger.warning(
            "%s waits: another run is computing the same stage (fingerprint %s, %s); "
            "its result will be this run's cache hit",
            stage.name,
            fp[:12],
            self.store.shown(self.store.stage_dir(fp)),
        )

    def _compute(self, st: RunState, stage: Stage, fp: str) -> None:
        """Submit this driver's first attempt of a claimed stage that has no usable cached result.

        Its number follows the attempts the run record counts (``StageOutcome.attempts``, from earlier
        drivers of the run): a stage a killed driver had begun runs again as attempt 2, and the console,
        the ledger, the Ray task's name and the tracker all say 2.
        """
        if stage.name in st.rerun:
            self.store.restart_progress(fp, stage.name, st.run_id)
        elif why := st.ledger.why_again(stage.name, fp, getattr(stage.fn, "__module__", "")):
            logger.info("%s runs again: %s", stage.name, why)
        inputs = {a: st.refs[a] for a in stage.inputs}
        seed = task_seed(stage, self.seed)
        before = st.outcomes[stage.name].attempts
        task = StageTask(stage, fp, inputs, self.store.uri, st.run_id, seed, attempt=before + 1, attempts_before=before)
        self._submit(st, task)

    def _code(self, stage: Stage) -> str:
        """The code version of ``stage``: the run's one, or its body module's."""
        if isinstance(self.code_version, str):
            return self.code_version
        return self.code_version.get(getattr(stage.fn, "__module__", ""), "")

    def _cached(self, stage: Stage, fp: str) -> Manifest | None:
        """A complete manifest whose outputs and files still match their digests, else None."""
        manifest = self.store.read_manifest(fp)
        if manifest is None:
            return None
        bad = self.store.verify(manifest) + sorted(set(stage.outputs) - set(manifest.outputs))
        if bad:
            logger.warning(
                "recompute %s: stored outputs or files %s are missing or corrupted (fingerprint %s)",
                stage.name,
                bad,
                fp[:12],
            )
            return None
        logger.info("skip %s: cache hit %s", stage.name, fp[:12])
        return manifest

    def _submit(self, st: RunState, task: StageTask) -> None:
        """Hand one attempt to the executor; the tracker is told its number (the first in this driver opens
        the stage's tracked run, a retry's goes on the same run)."""
        stage = task.stage
        self.tracker.stage_started(stage.name, stage.generation, attempt=task.attempt)
        forced = " (rerun on request, cache not read)" if stage.name in st.rerun else ""
        logger.info("run %s (attempt %d, fingerprint %s)%s", stage.name, task.attempt, task.fingerprint[:12], forced)
        outcome = st.outcomes[stage.name]
        if task.tries == 1:
            outcome.submitted_at = time.monotonic()
        st.in_flight[self.executor.submit(task)] = task
        outcome.state, outcome.attempts = StageState.RUNNING, task.attempt

    def _settle(self, st: RunState, task: StageTask, outcome: Any) -> None:
        """Record a success, or retry / fail a stage according to ``decide``."""
        stage = task.stage
        if isinstance(outcome, Manifest):
            self.claims.release(task.fingerprint)
            self._record_success(st, stage, outcome, cache_hit=False)
            how = _resumed_how(outcome.metrics)
            logger.info("done %s in %.1f s%s", stage.name, st.outcomes[stage.name].duration_s, how)
            return
        if not isinstance(outcome, BaseException):
            outcome = TypeError(f"executor returned {type(outcome).__name__} for {stage.name}; expected a Manifest")
        if decide(outcome, task.tries, stage.retries) is Decision.RETRY:
            logger.warning(
                "stage %s attempt %d failed (%s: %s); retrying (%d of %d retries used)",
                stage.name,
                task.attempt,
                type(outcome).__name__,
                outcome,
                task.tries,
                retries_for(outcome, stage.retries),
            )
            self._submit(st, task.retry())
            return
        self.claims.release(task.fingerprint)
        self._record_failure(st, task, outcome)

    def _record_success(self, st: RunState, stage: Stage, manifest: Manifest, cache_hit: bool) -> None:
        st.refs.update(manifest.outputs)
        st.manifests[stage.name] = manifest
        outcome = st.outcomes[stage.name]
        outcome.state = StageState.CACHED if cache_hit else StageState.SUCCEEDED
        outcome.duration_s = 0.0 if cache_hit else wall_time(outcome, manifest)
        outcome.node = manifest.node or None
        outcome.metrics = dict(manifest.metrics)
        self._forget_earlier_failure(st, stage.name)
        record = self.reports.finished(st.run_id, stage, manifest, cache_hit, outcome.duration_s)
        self.tracker.stage_finished(dataclasses.replace(record, attempts=outcome.attempts))

    def _record_failure(self, st: RunState, task: StageTask, error: BaseException) -> None:
        """Record a stage's final failure: its ledger entry, its traceback (logged, kept in the run record and
        given to the tracker), and the run's StageError, which names where the traceback is kept."""
        stage = task.stage
        message = f"{type(error).__name__}: {error}"
        outcome = st.outcomes[stage.name]
        outcome.state, outcome.error = StageState.FAILED, message
        text = failure_traceback(error)
        if text is None:  # an earlier attempt's traceback would be taken for this failure's
            self._forget_earlier_failure(st, stage.name)
        outcome.traceback = None if text is None else st.write_traceback(stage.name, task.attempt, text)
        where = self.reports.traceback_location(outcome.traceback)
        self._log_failure(stage.name, task.attempt, message, body_traceback(error), text, where)
        record = self.reports.failed(st.run_id, stage, task.fingerprint, message, outcome.traceback)
        self.tracker.stage_finished(dataclasses.replace(record, attempts=task.attempt))
        if st.failure is None:
            st.failure = StageError(stage.name, error, task.attempt, where)

    @staticmethod
    def _forget_earlier_failure(st: RunState, name: str) -> None:
        """Remove the traceback an earlier attempt of the run kept of stage ``name``, which no longer stands.

        Asked only of a stage an earlier attempt failed (or left running), and not of a store that has already
        failed a record write in this attempt (``RunState.record_lost``).
        """
        if st.record_lost is None and st.ledger.may_hold_traceback(name):
            drop_traceback(st.ledger.store, st.run_id, name)

    @staticmethod
    def _log_failure(
        name: str, attempts: int, message: str, body: str | None, full: str | None, where: str | None
    ) -> None:
        """The stage's failure, once, at ERROR: with the body's traceback when it raised (the frames a stage's
        author needs, Relay's and Ray's left out); any other traceback (Relay's own frames) only at DEBUG (-v)."""
        kept = f" (traceback kept in {where})" if where else ""
        if body:
            logger.error("stage %s failed after %d attempt(s): %s%s\n%s", name, attempts, message, kept, body.rstrip())
            return
        logger.error("stage %s failed after %d attempt(s): %s%s", name, attempts, message, kept)
        if full:
            logger.debug("traceback of %s's failure:\n%s", name, full.rstrip())


def _stages_per_generation(pipeline: Pipeline) -> dict[int, int]:
    """Generation -> how many stages it has: what the ledger needs to say which generations are done."""
    counts: dict[int, int] = {}
    for stage in pipeline.stages:
        if stage.generation is not None:
            counts[stage.generation] = counts.get(stage.generation, 0) + 1
    return counts


def _all_done(pipeline: Pipeline, outcomes: Mapping[str, Any], ledger: Ledger) -> bool:
    """Whether every stage of the pipeline is done: by this attempt, or by an earlier one of the run.

    Why: an attempt that stops after a stage plans only that stage and what it needs; a tune trial
    runs its last generation that way, and a run whose earlier attempts had done the rest (its
    first generation's evaluation, not an input of the last one) read STOPPED though complete.
    """
    return {stage.name for stage in pipeline.stages} <= set(outcomes) | done_in(ledger.earlier_stages)


def _resumed_how(metrics: Mapping[str, float]) -> str:
    """What a stage's "done" line adds when it resumed from an earlier attempt's work: the step or the row."""
    if step := int(metrics.get(RESUMED_FROM_STEP, 0)):
        return f" (resumed at step {step} from an earlier attempt's checkpoint)"
    if rows := int(metrics.get(RESUMED_FROM_ROWS, 0)):
        return f" (resumed at row {rows} from the shards an earlier attempt labeled)"
    return ""
