"""The runner: plan, skip what is done, dispatch what is ready, retry by policy.

One loop (kedro's shape): every stage whose inputs exist is fingerprinted;
a stage with a complete, verified manifest under that fingerprint is skipped;
the others are submitted to the executor, and the runner waits for the
first to finish. Failures go through ``decide``, a pure function, so the
retry policy is unit-tested without a cluster. A ledger of stage states is
rewritten under ``<runs_dir>/<run_id>/ledger.json`` after every change, and
on a final failure the log says exactly how to resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from orchestrator.artifacts import ArtifactRef, ArtifactStore, Manifest, StoreCheckpointer, sanitize
from orchestrator.dag import Checkpointer, Parallelism, Pipeline, ShardMapper, Stage, StageContext, StageResult, map_in_order
from orchestrator.errors import ArtifactError, ConfigError, PipelineError, StageError
from orchestrator.executor import Executor
from orchestrator.lineage import TrackedArtifact
from orchestrator.tracking import StageRecord, Tracker

logger = logging.getLogger(__name__)

# Errors that recur on every attempt: bad values, bad types, bugs. Retrying wastes a slot.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError,
    FloatingPointError, ConfigError, PipelineError,
)


class Decision(Enum):
    """What to do with a failed stage attempt."""

    RETRY = "retry"
    RAISE = "raise"


class StageState(Enum):
    """Where one stage stands in this run."""

    PENDING = "pending"
    RUNNING = "running"
    CACHED = "cached"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (StageState.CACHED, StageState.SUCCEEDED, StageState.FAILED)


class RunStatus(Enum):
    """Where the whole run stands; STOPPED means it ended at ``stop_after`` on purpose."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self is not RunStatus.RUNNING


def decide(error: BaseException, attempt: int, max_retries: int) -> Decision:
    """Retry transient failures while attempts remain; never retry deterministic ones.

    ``attempt`` counts attempts made so far (1 after the first failure), so a
    stage with ``max_retries=2`` runs at most three times.
    """
    if not isinstance(error, Exception) or isinstance(error, DETERMINISTIC_ERRORS):
        return Decision.RAISE
    if isinstance(error, ArtifactError) and not error.retryable:
        return Decision.RAISE
    return Decision.RETRY if attempt <= max_retries else Decision.RAISE


def _canonical(value: Any) -> Any:
    """JSON fallback for params: typed settings as their JSON dump, sets sorted, paths and enums as text.

    Stage params hold the config's typed sections (pydantic models, validated once at the edge);
    their ``model_dump(mode="json")`` is what identifies them.
    """
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (Path, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    raise TypeError(f"{type(value).__name__} is not JSON-able; stage params must be plain config values")


def fingerprint(stage: Stage, input_digests: Mapping[str, str], code_version: str, seed: int = 0) -> str:
    """sha256 of what determines a stage's outputs: name, function, params, code, inputs, seed."""
    payload = {
        "stage": stage.name,
        "fn": f"{getattr(stage.fn, '__module__', '?')}.{getattr(stage.fn, '__qualname__', repr(stage.fn))}",
        "params": stage.params,
        "outputs": list(stage.outputs),
        "inputs": dict(sorted(input_digests.items())),
        "code_version": code_version,
        "seed": seed,
    }
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_canonical)
    except TypeError as exc:
        raise TypeError(f"stage {stage.name!r}: cannot fingerprint its params: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()


def stage_seed(seed: int, stage_name: str) -> int:
    """A per-stage seed: stages draw independent streams, and a rerun draws the same one."""
    return int(hashlib.sha256(f"{seed}:{stage_name}".encode()).hexdigest()[:8], 16)


def stage_device(num_gpus: float) -> str:
    """"cuda" when the stage asked for a GPU and one is visible, else "cpu"."""
    import torch  # not at the top: the driver never imports torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


@dataclass
class Placement:
    """Where one copy of a stage body runs: its rank, device and how it checkpoints and shards.

    The default is a single process that checkpoints into the stage's scratch
    space and maps shards in a loop; ``orchestrator.distributed`` builds the
    Ray Train and actor-pool variants.
    """

    rank: int = 0
    world_size: int = 1
    device: str | None = None
    checkpointer: Checkpointer | None = None
    shard_mapper: ShardMapper = map_in_order


def execute_stage(
    stage: Stage,
    fingerprint: str,
    input_refs: Mapping[str, ArtifactRef],
    store_uri: str,
    run_id: str,
    seed: int,
    attempt: int,
    backend: str = "local",
) -> Manifest:
    """Run one stage where it is scheduled (a Ray worker or this process) and store its outputs.

    On the Ray backend a stage with workers > 1 fans out: data-parallel
    stages through Ray Train (this task only coordinates), sharded stages
    over an actor pool. Anywhere else it runs as one process.
    """
    placement = Placement()
    if stage.resources.workers > 1 and backend == "ray":
        from orchestrator import distributed

        if stage.parallelism is Parallelism.DATA:
            return distributed.fit_stage(stage, fingerprint, input_refs, store_uri, run_id, seed, attempt)
        placement.shard_mapper = distributed.actor_pool_mapper(stage.resources)
        placement.device = "cuda" if stage.resources.num_gpus > 0 else "cpu"  # the shard actors' device
    elif stage.resources.workers > 1:
        logger.info("%s asks for %d workers; the %s backend runs it as one process",
                    stage.name, stage.resources.workers, backend)
    manifest = run_stage_body(stage, fingerprint, input_refs, store_uri, run_id, seed, attempt, placement)
    assert manifest is not None  # rank 0 always stores
    return manifest


def run_stage_body(
    stage: Stage,
    fingerprint: str,
    input_refs: Mapping[str, ArtifactRef],
    store_uri: str,
    run_id: str,
    seed: int,
    attempt: int,
    placement: Placement,
) -> Manifest | None:
    """Load the inputs, call the stage function, and (on rank 0) store its outputs.

    Inputs are loaded from the store here, not passed as objects, so a
    stage's data never travels through the driver. Every rank gets the same
    seed: data-parallel ranks draw the same global batch and take their slice.
    Returns None on ranks other than 0, which store nothing.
    """
    import torch  # in the worker only: the driver never imports torch (tests/unit/pipelines/test_driver_imports.py)

    store = ArtifactStore(store_uri)
    inputs = {name: store.load(ref) for name, ref in input_refs.items()}
    checkpointer = placement.checkpointer or StoreCheckpointer(store, fingerprint)
    ctx = StageContext(run_id=run_id, stage=stage.name, generation=stage.generation,
                       seed=stage_seed(seed, stage.name),
                       device=placement.device or stage_device(stage.resources.num_gpus), attempt=attempt,
                       rank=placement.rank, world_size=placement.world_size, checkpointer=checkpointer,
                       shard_mapper=placement.shard_mapper)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(stage.resources.num_cpus)))
    torch.manual_seed(ctx.seed)
    started = time.perf_counter()
    try:
        result = stage.fn(ctx, inputs, stage.params)
        _check_result(stage, result)
        if ctx.rank != 0:
            return None
        manifest = store.write_stage(fingerprint, stage.name, result, ctx.series, started=started)
    finally:
        torch.set_num_threads(threads)
    store.clear_scratch(fingerprint)
    return manifest


def _check_result(stage: Stage, result: Any) -> None:
    """A stage must return a StageResult with exactly its declared outputs."""
    if not isinstance(result, StageResult):
        raise TypeError(f"stage {stage.name!r} returned {type(result).__name__}; expected StageResult(outputs=...)")
    got, expected = set(result.outputs), set(stage.outputs)
    if got != expected:
        raise ValueError(
            f"stage {stage.name!r} returned outputs {sorted(got)}; expected {sorted(expected)}; "
            "return exactly the outputs the stage declares"
        )


@dataclass
class StageOutcome:
    """One stage's state in a run, as written to the ledger."""

    state: StageState = StageState.PENDING
    fingerprint: str | None = None
    attempts: int = 0
    duration_s: float = 0.0
    error: str | None = None


@dataclass
class RunSummary:
    """What a run did: its status and every stage's outcome."""

    run_id: str
    status: RunStatus
    stages: dict[str, StageOutcome]
    manifests: dict[str, Manifest] = field(default_factory=dict)

    def names(self, state: StageState) -> list[str]:
        """Stage names in ``state`` (e.g. which stages were cache hits)."""
        return [name for name, outcome in self.stages.items() if outcome.state is state]


@dataclass
class _Task:
    stage: Stage
    fingerprint: str
    attempt: int


@dataclass
class _RunState:
    """Mutable bookkeeping of one run; lives only inside Runner.run."""

    pipeline: Pipeline
    run_id: str
    pending: list[Stage]
    outcomes: dict[str, StageOutcome]
    refs: dict[str, ArtifactRef] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    in_flight: dict[Any, _Task] = field(default_factory=dict)
    failure: StageError | None = None


class Runner:
    """Runs a pipeline's stages through an executor, skipping completed ones."""

    def __init__(self, store: ArtifactStore, executor: Executor, tracker: Tracker, code_version: str,
                 seed: int, runs_dir: Path) -> None:
        self.store = store
        self.executor = executor
        self.tracker = tracker
        self.code_version = code_version
        self.seed = seed
        self.runs_dir = Path(runs_dir)

    def run(self, pipeline: Pipeline, run_id: str, stop_after: str | None = None) -> RunSummary:
        """Run every stage (or up to and including ``stop_after``); raise StageError on failure.

        The caller (the CLI, the composition root) opens and closes the
        tracker's pipeline run around this call; the runner reports stages.
        """
        st = _RunState(pipeline, run_id, self._targets(pipeline, stop_after), {})
        st.outcomes = {s.name: StageOutcome() for s in st.pending}
        ledger = _Ledger(self.runs_dir / run_id / "ledger.json", pipeline.name, run_id, self.code_version,
                         self.seed, stop_after)
        ledger.write(RunStatus.RUNNING, st.outcomes)
        try:
            self._loop(st, ledger)
        except BaseException as exc:
            ledger.write(RunStatus.FAILED, st.outcomes)
            logger.error("run %s failed: %s. Fix the cause. Resume with: relay resume %s", run_id, exc, run_id)
            raise
        status = RunStatus.STOPPED if len(st.outcomes) < len(pipeline.stages) else RunStatus.FINISHED
        ledger.write(status, st.outcomes)
        logger.info("run %s %s: %d executed, %d cached", run_id, status.value.lower(),
                    sum(o.state is StageState.SUCCEEDED for o in st.outcomes.values()),
                    sum(o.state is StageState.CACHED for o in st.outcomes.values()))
        return RunSummary(run_id, status, st.outcomes, st.manifests)

    @staticmethod
    def _targets(pipeline: Pipeline, stop_after: str | None) -> list[Stage]:
        """Stages to run, in declaration order: all, or ``stop_after`` and its upstream."""
        if stop_after is None:
            return list(pipeline.stages)
        wanted = pipeline.upstream(stop_after) | {stop_after}
        return [s for s in pipeline.stages if s.name in wanted]

    def _loop(self, st: _RunState, ledger: _Ledger) -> None:
        """Dispatch ready stages, settle finished ones; after a failure, drain then raise."""
        while True:
            if st.failure is None:
                self._dispatch_ready(st, ledger)
            if not st.in_flight:
                break
            for handle, outcome in self.executor.wait(list(st.in_flight)):
                self._settle(st, st.in_flight.pop(handle), outcome)
                ledger.write(RunStatus.RUNNING, st.outcomes)
        if st.failure is not None:
            raise st.failure from st.failure.cause
        if st.pending:  # unreachable for a validated DAG; guards the loop's invariant
            raise PipelineError([f"stages never became ready: {[s.name for s in st.pending]}"], st.pipeline.name)

    def _dispatch_ready(self, st: _RunState, ledger: _Ledger) -> None:
        """Skip or submit every stage whose inputs exist; repeat while skips unlock more."""
        progressed = True
        while progressed:
            ready = [s for s in st.pending if all(a in st.refs for a in s.inputs)]
            progressed = False
            for stage in ready:
                st.pending.remove(stage)
                digests = {a: st.refs[a].digest for a in stage.inputs}
                fp = fingerprint(stage, digests, self.code_version, self.seed)
                st.outcomes[stage.name].fingerprint = fp
                manifest = self._cached(stage, fp)
                if manifest is None:
                    self._submit(st, _Task(stage, fp, attempt=1))
                else:
                    self._record_success(st, stage, manifest, cache_hit=True)
                    progressed = True
                ledger.write(RunStatus.RUNNING, st.outcomes)

    def _cached(self, stage: Stage, fp: str) -> Manifest | None:
        """A complete manifest whose outputs still match their digests, else None."""
        manifest = self.store.read_manifest(fp)
        if manifest is None:
            return None
        bad = self.store.verify(manifest) + sorted(set(stage.outputs) - set(manifest.outputs))
        if bad:
            logger.warning("recompute %s: stored outputs %s are missing or corrupted (fingerprint %s)",
                           stage.name, bad, fp[:12])
            return None
        logger.info("skip %s: cache hit %s", stage.name, fp[:12])
        return manifest

    def _submit(self, st: _RunState, task: _Task) -> None:
        stage = task.stage
        inputs = {a: st.refs[a] for a in stage.inputs}
        if task.attempt == 1:
            self.tracker.stage_started(stage.name, stage.generation)
        logger.info("run %s (attempt %d, fingerprint %s)", stage.name, task.attempt, task.fingerprint[:12])
        backend = getattr(self.executor, "backend", "local")
        handle = self.executor.submit(execute_stage, stage, task.fingerprint, inputs, self.store.uri,
                                      st.run_id, self.seed, task.attempt, backend, resources=stage.resources)
        st.in_flight[handle] = task
        outcome = st.outcomes[stage.name]
        outcome.state, outcome.attempts = StageState.RUNNING, task.attempt

    def _settle(self, st: _RunState, task: _Task, outcome: Any) -> None:
        """Record a success, or retry / fail a stage according to ``decide``."""
        stage = task.stage
        if isinstance(outcome, Manifest):
            logger.info("done %s in %.1f s", stage.name, outcome.duration_s)
            self._record_success(st, stage, outcome, cache_hit=False)
            return
        if not isinstance(outcome, BaseException):
            outcome = TypeError(f"executor returned {type(outcome).__name__} for {stage.name}; expected a Manifest")
        if decide(outcome, task.attempt, stage.retries) is Decision.RETRY:
            logger.warning("stage %s attempt %d failed (%s: %s); retrying (%d of %d retries used)",
                           stage.name, task.attempt, type(outcome).__name__, outcome, task.attempt, stage.retries)
            self._submit(st, _Task(stage, task.fingerprint, task.attempt + 1))
            return
        self._record_failure(st, task, outcome)

    def _record_success(self, st: _RunState, stage: Stage, manifest: Manifest, cache_hit: bool) -> None:
        st.refs.update(manifest.outputs)
        st.manifests[stage.name] = manifest
        outcome = st.outcomes[stage.name]
        outcome.state = StageState.CACHED if cache_hit else StageState.SUCCEEDED
        outcome.duration_s = 0.0 if cache_hit else manifest.duration_s
        self.tracker.stage_finished(StageRecord(
            stage=stage.name, generation=stage.generation, fingerprint=manifest.fingerprint, cache_hit=cache_hit,
            status="FINISHED", metrics=dict(manifest.metrics), series=list(manifest.series),
            files=self._local_files(st.run_id, stage.name, manifest), duration_s=outcome.duration_s,
            inputs=tuple(stage.inputs), outputs=self._tracked_outputs(st.run_id, stage, manifest),
        ))

    def _record_failure(self, st: _RunState, task: _Task, error: BaseException) -> None:
        stage = task.stage
        message = f"{type(error).__name__}: {error}"
        outcome = st.outcomes[stage.name]
        outcome.state, outcome.error = StageState.FAILED, message
        logger.error("stage %s failed after %d attempt(s): %s", stage.name, task.attempt, message)
        self.tracker.stage_finished(StageRecord(
            stage=stage.name, generation=stage.generation, fingerprint=task.fingerprint, cache_hit=False,
            status="FAILED", error=message,
        ))
        if st.failure is None:
            st.failure = StageError(stage.name, error, task.attempt)

    def _tracked_outputs(self, run_id: str, stage: Stage, manifest: Manifest) -> dict[str, TrackedArtifact]:
        """The stage's stored outputs for lineage tracking; models get a local copy when the store is remote."""
        tracked = {}
        for name, ref in manifest.outputs.items():
            kind = stage.lineage.get(name)
            local = self.store.local_path(ref.path)
            if local is None and kind == "model":
                local = self.runs_dir / run_id / "files" / sanitize(stage.name) / Path(ref.path).name
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(self.store.read_bytes(ref.path))
            tracked[name] = TrackedArtifact(name=name, uri=self.store.location(ref.path), digest=ref.digest,
                                            kind=ref.kind, lineage=kind, local_path=None if local is None else str(local))
        return tracked

    def _local_files(self, run_id: str, stage_name: str, manifest: Manifest) -> dict[str, str]:
        """Local paths of a stage's extra files, copied out of a remote store when needed."""
        files: dict[str, str] = {}
        for name, relative in manifest.files.items():
            path = self.store.local_path(relative)
            if path is None:
                path = self.runs_dir / run_id / "files" / sanitize(stage_name) / sanitize(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.store.read_bytes(relative))
            files[name] = str(path)
        return files


@dataclass
class _Ledger:
    """The run's record of stage states on local disk, rewritten atomically."""

    path: Path
    pipeline: str
    run_id: str
    code_version: str
    seed: int
    stop_after: str | None

    def write(self, status: RunStatus, outcomes: Mapping[str, StageOutcome]) -> None:
        data = {
            "run_id": self.run_id, "pipeline": self.pipeline, "status": status.value,
            "code_version": self.code_version, "seed": self.seed, "stop_after": self.stop_after,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "stages": {name: {"state": o.state.value, "fingerprint": o.fingerprint, "attempts": o.attempts,
                              "duration_s": round(o.duration_s, 3), "error": o.error}
                       for name, o in outcomes.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(temp, self.path)
