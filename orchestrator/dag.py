"""Stages as data and the pipeline graph built from their named inputs and outputs.

Edges are never declared: a stage depends on whichever stage produces an
artifact it reads (kedro's model). Generations are unrolled by the pipeline
builders, so the engine only ever sees a static DAG, validated once.
"""

from __future__ import annotations

import graphlib
import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from orchestrator.errors import PipelineError
from orchestrator.names import file_name_clashes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one stage asks the cluster for; ``workers`` > 1 means data-parallel training.

    ``custom`` are Ray custom resources per worker (``{"gpu_node": 1}``): a stage asking for
    one runs only on nodes started with it (``ray start --resources``), which is how a stage
    is pinned to a kind of node. Given as a mapping, kept as sorted ``(name, amount)`` pairs so
    that Resources stay hashable (the executor keys its actor pools by them); ``dict(custom)``
    is the mapping again.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    workers: int = 1
    custom: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "custom", tuple(sorted(dict(self.custom).items())))
        negative = [name for name, amount in self.custom if amount < 0]
        if self.num_cpus < 0 or self.num_gpus < 0 or self.workers < 1 or negative:
            raise ValueError(
                f"Resources must have num_cpus >= 0, num_gpus >= 0, workers >= 1 and custom amounts >= 0; "
                f"got {self}; fix the stage's resources"
            )


class Parallelism(Enum):
    """How a stage with ``workers`` > 1 uses its workers.

    DATA: every worker runs the stage body as one rank of a data-parallel
    group (Ray Train); rank 0 writes the outputs. SHARDS: the body runs once,
    as the first worker, and ``ctx.map_shards`` labels shards there and on
    ``workers - 1`` actors.
    """

    DATA = "data"
    SHARDS = "shards"


class Checkpointer(Protocol):
    """Where a stage keeps its in-stage checkpoint (a scratch dir, or Ray Train's storage).

    ``save``/``load`` keep one state that each save replaces (training). ``save_part``/``load_part``
    keep numbered parts that are never rewritten (the finished shards of a labeling stage): a
    stage whose progress grows with N spills each piece once instead of rewriting an ever-larger
    state.
    """

    def save(self, state: dict[str, Any], step: int) -> None: ...

    def load(self) -> dict[str, Any] | None: ...

    def save_part(self, index: int, data: bytes) -> None: ...

    def load_part(self, index: int) -> bytes | None: ...


ShardMapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]
PROGRESS_EVERY_S = 1.0  # the most often one stage sends progress: the driver shows it, nothing waits on it
SERIES_KEY = "relay.series"  # a checkpoint's metrics reported so far (StageContext.save_checkpoint / load_checkpoint)


@dataclass(frozen=True)
class StageProgress:
    """How far one attempt of a running stage is: what a worker sends to the run's progress board.

    ``done``/``total`` count ``unit`` (steps, rows, shards); ``total`` None means the stage has
    only said that it runs. ``initial`` is ``done`` at the stage's first report and ``elapsed_s``
    the seconds since then on the worker's own clock, so the driver derives rate and ETA without
    comparing clocks (a stage resumed at step 500 is not credited with 500 steps in no time).
    ``finished`` closes the attempt's line.
    """

    stage: str
    attempt: int
    done: float = 0.0
    total: float | None = None
    unit: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    initial: float = 0.0
    elapsed_s: float = 0.0
    finished: bool = False


ProgressSink = Callable[[StageProgress], None]


def map_in_order(fn: Callable[[Any], Any], shards: Iterable[Any]) -> Iterator[Any]:
    """The in-process shard mapper: one shard after the other, results in shard order."""
    return (fn(shard) for shard in shards)


_STAGE_END: list[Callable[[], None]] = []


def on_stage_end(release: Callable[[], None]) -> Callable[[], None]:
    """Have ``release`` called in the worker process whenever a stage body there ends (usable as a decorator).

    Why: what a body leaves running in its worker must not outlive the stage. Ray ends a task
    worker that sat idle for a while by killing its child processes, and a DataLoader whose
    worker processes are killed under it raises "DataLoader worker ... is killed by signal:
    Killed" into a run that succeeded. State a later stage reuses (decoded data) may stay.
    """
    if release not in _STAGE_END:
        _STAGE_END.append(release)
    return release


def stage_ended() -> None:
    """Call every ``on_stage_end`` function (the engine does, after each stage body, however it ended)."""
    for release in _STAGE_END:
        try:
            release()
        except Exception:  # a release that fails must not turn a finished stage into a failed one
            name = getattr(release, "__qualname__", release)
            logger.warning("could not release %s after a stage", name, exc_info=True)


@dataclass
class StageContext:
    """What a stage function may know about where it runs; nothing about files or Ray.

    ``rank``/``world_size`` say which data-parallel worker this is (0 of 1
    unless the stage asked for workers > 1); only rank 0's outputs are
    stored. ``checkpointer`` and ``shard_mapper`` are chosen by the executor
    so that the stage body stays the same on a laptop and on a cluster.
    """

    run_id: str
    stage: str
    generation: int | None
    seed: int
    device: str
    attempt: int
    series: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    checkpointer: Checkpointer | None = None
    shard_mapper: ShardMapper = map_in_order
    progress_sink: ProgressSink | None = None
    _shown: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _first: tuple[float, float] | None = field(default=None, init=False, repr=False)
    _sent_at: float = field(default=0.0, init=False, repr=False)

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record step metrics; they travel back in the result and the driver logs them."""
        values = {k: float(v) for k, v in metrics.items()}
        self.series.append((int(step), values))
        logger.debug("%s step %d: %s", self.stage, step, values)

    def progress(
        self, done: float, total: float | None = None, unit: str = "", metrics: Mapping[str, float] | None = None
    ) -> None:
        """Say how far the stage is (``done`` of ``total`` ``unit``) and its latest metrics (loss, mask rate).

        The driver shows it: a bar on a terminal, a periodic log line otherwise. Cheap enough to call
        every step: rank 0 sends at most one update every PROGRESS_EVERY_S (and always the last one),
        without waiting for an answer, so progress never slows the stage. Metrics are remembered, so
        an update between two reports still carries the last loss. Without a sink (no board for the
        run, or not rank 0) it only remembers.
        """
        if metrics:
            self._shown.update({k: float(v) for k, v in metrics.items()})
        if self.rank != 0 or self.progress_sink is None:
            return
        now = time.monotonic()
        last = total is not None and done >= total
        if self._first is None:
            self._first = (now, done)
        elif not last and now - self._sent_at < PROGRESS_EVERY_S:
            return
        self._sent_at = now
        started, initial = self._first
        self.progress_sink(
            StageProgress(self.stage, self.attempt, done, total, unit, dict(self._shown), initial, now - started)
        )

    def save_checkpoint(self, state: dict[str, Any], step: int) -> None:
        """Keep ``state`` (tensors and plain values) so a restarted attempt resumes at ``step``.

        Every rank must call it (under Ray Train it is a collective report);
        only rank 0's state is stored. Without a checkpointer it does nothing.
        The metrics reported so far go with it (``load_checkpoint`` puts them back).
        """
        if self.checkpointer is not None:
            self.checkpointer.save({**state, SERIES_KEY: [[step, dict(values)] for step, values in self.series]}, step)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last state saved by an earlier attempt of this stage, or None to start fresh.

        The metrics that attempt had reported up to its checkpoint become this attempt's first: a
        resumed stage's curve in MLflow (its manifest's series) was missing every point before the
        checkpoint, since the attempt that reported them was cut off before it could store them.
        """
        state = None if self.checkpointer is None else self.checkpointer.load()
        if state is None:
            return None
        earlier = state.pop(SERIES_KEY, None) or []
        self.series[:0] = [(int(step), {k: float(v) for k, v in values.items()}) for step, values in earlier]
        return state

    def save_part(self, index: int, data: bytes) -> None:
        """Keep part ``index`` of the stage's work (one finished shard's bytes) for a restarted attempt.

        Each part is written once, atomically, beside the in-stage checkpoint (the stage's scratch
        space in the store, so it outlives the process and the driver); it is dropped with it when
        the stage's outputs are stored, or when the stage is rerun on request. Only rank 0 keeps
        parts; without a checkpointer it does nothing.
        """
        if self.checkpointer is not None and self.rank == 0:
            self.checkpointer.save_part(index, data)

    def load_part(self, index: int) -> bytes | None:
        """Part ``index`` as an earlier attempt of this stage (same fingerprint) saved it, or None."""
        return None if self.checkpointer is None else self.checkpointer.load_part(index)

    def map_shards(self, fn: Callable[[Any], Any], shards: Iterable[Any]) -> Iterator[Any]:
        """``fn(shard)`` for every shard, yielded in shard order (on actors under Ray).

        ``fn`` must be picklable (a module-level function or a partial of one).
        Results are yielded as they arrive, so a caller that streams them keeps
        memory flat however many shards there are.
        """
        return self.shard_mapper(fn, shards)


# The metric a stage that resumed from ``StageContext.load_checkpoint`` reports: the step it went on from (0: it
# started fresh). The runner says it beside the stage's "done" line, which is all a driver shows of a stage
# whose own log lines stay in its Ray worker.
RESUMED_FROM_STEP = "resumed_from_step"
# Its counterpart for a stage that resumed from the parts an earlier attempt saved (``StageContext.load_part``):
# the rows those parts held, which the stage did not compute again (0: it started fresh).
RESUMED_FROM_ROWS = "resumed_from_rows"

# A stage file of this name holds a JSON object of text results (names to strings), which a metric, a
# number, cannot hold (a chosen source's name): the tracker sets them as tags on the stage's run, its
# generation's and the pipeline's, and does not log the file itself.
TAGS_FILE = "tags.json"


@dataclass
class StageResult:
    """A stage's return value: outputs by artifact name, scalar metrics, extra files.

    Outputs are a pyarrow.Table (stored as Parquet), a pyarrow.RecordBatchReader
    (streamed into Parquet batch by batch, so a table larger than memory can be
    written), or a dict of tensors and plain values (stored as a torch
    checkpoint). Metrics are read after the outputs are written, so a streamed
    output may fill them in as it is consumed. ``files`` are raw bytes (PNG,
    CSV) logged to the stage's MLflow run; one named ``TAGS_FILE`` becomes tags.
    """

    outputs: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


StageFn = Callable[[StageContext, dict[str, Any], Mapping[str, Any]], StageResult]


@dataclass(frozen=True)
class Stage:
    """One node of the pipeline: a module-level function plus its named artifacts.

    ``params`` is the stage's config section (JSON-able); it is part of the
    fingerprint, so changing it reruns the stage and everything downstream.
    ``lineage`` says what some outputs are for tracking (output name ->
    ``"model"`` or ``"dataset"``): the tracker logs models and registers them,
    and logs datasets as inputs of the runs that read them. It is data the
    builder declares, not part of the fingerprint. ``reports``, when the builder
    knows it, names the metrics the stage reports (fnmatch patterns such as
    ``recall/*``), so that a tune metric no stage reports is refused before a
    sweep starts rather than when its first trial ends; None: not declared.
    ``seeded`` False declares that the run's ``seed`` does not determine the
    stage's outputs (a data split, which ``data.fold`` draws): its fingerprint
    leaves the seed out, so runs that differ only in ``seed`` (a sweep over it)
    share its cached outputs instead of recomputing them, and the runner gives
    it the same ``ctx.seed`` in every run, so the declaration cannot go stale.
    ``input_roles`` says what some inputs are to the stage (role -> input artifact: ``teacher``,
    ``pretrained``, ``previous``), so that tracking can tell a model the stage learns from apart
    from one it starts from. Like ``lineage`` it is data the builder declares, not part of the
    fingerprint: how a pipeline names its inputs' roles is the pipeline's business, and the engine
    only passes them on.
    """

    name: str
    fn: StageFn
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    resources: Resources = Resources()
    retries: int = 0
    generation: int | None = None
    parallelism: Parallelism = Parallelism.DATA
    lineage: Mapping[str, str] = field(default_factory=dict)
    reports: tuple[str, ...] | None = None
    seeded: bool = True
    input_roles: Mapping[str, str] = field(default_factory=dict)


class Pipeline:
    """A validated, static DAG of stages.

    Validation runs once, here, and lists every problem so a pipeline
    builder's mistakes surface before anything is scheduled.
    """

    def __init__(self, name: str, stages: Sequence[Stage]) -> None:
        self.name = name
        self.stages: tuple[Stage, ...] = tuple(stages)
        self._by_name = {s.name: s for s in self.stages}
        self._producers = _producers(self.stages)
        problems = _structure_problems(self.stages, self._producers)
        self._graph = {s.name: {self._producers[a].name for a in s.inputs if a in self._producers} for s in self.stages}
        problems += _cycle_problems(self._graph)
        if problems:
            raise PipelineError(problems, name)

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; the error lists the valid names."""
        if name not in self._by_name:
            raise PipelineError([f"no stage named {name!r}; valid stages: {', '.join(self._by_name)}"], self.name)
        return self._by_name[name]

    def producer(self, artifact: str) -> Stage:
        """The stage that writes ``artifact``."""
        if artifact not in self._producers:
            raise PipelineError([f"no stage produces {artifact!r}; artifacts: {', '.join(self._producers)}"], self.name)
        return self._producers[artifact]

    def layers(self) -> list[list[Stage]]:
        """Stages grouped so each layer depends only on earlier layers (declaration order inside)."""
        order = {s.name: i for i, s in enumerate(self.stages)}
        sorter = graphlib.TopologicalSorter(self._graph)
        sorter.prepare()
        layers = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=order.__getitem__)
            layers.append([self._by_name[n] for n in ready])
            sorter.done(*ready)
        return layers

    def upstream(self, stage_name: str) -> set[str]:
        """Names of every stage ``stage_name`` depends on, directly or not."""
        self.stage(stage_name)
        return _reachable(stage_name, self._graph)

    def downstream(self, stage_name: str) -> set[str]:
        """Names of every stage that depends on ``stage_name``, directly or not (what a rerun of it invalidates)."""
        self.stage(stage_name)
        readers: dict[str, set[str]] = {name: set() for name in self._graph}
        for name, dependencies in self._graph.items():
            for dependency in dependencies:
                readers[dependency].add(name)
        return _reachable(stage_name, readers)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {len(self.stages)} stages)"


def _reachable(start: str, edges: Mapping[str, set[str]]) -> set[str]:
    """Every node reachable from ``start`` along ``edges`` (``start`` itself only through a cycle)."""
    seen: set[str] = set()
    todo = list(edges[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    return seen


def _producers(stages: Sequence[Stage]) -> dict[str, Stage]:
    """Artifact name -> the first stage that outputs it."""
    producers: dict[str, Stage] = {}
    for stage in stages:
        for artifact in stage.outputs:
            producers.setdefault(artifact, stage)
    return producers


def _structure_problems(stages: Sequence[Stage], producers: Mapping[str, Stage]) -> list[str]:
    """Duplicate names, doubly produced outputs, names stored as one, missing inputs, roles of no input,
    unpicklable functions."""
    problems = [
        f"stage name {name!r} is used {count} times; stage names must be unique"
        for name, count in Counter(s.name for s in stages).items()
        if count > 1
    ]
    writers: dict[str, list[str]] = {}
    for stage in stages:
        for artifact in stage.outputs:
            writers.setdefault(artifact, []).append(stage.name)
    problems += [
        f"output {artifact!r} is produced by {len(names)} stages ({', '.join(names)}); give each a distinct name"
        for artifact, names in writers.items()
        if len(names) > 1
    ]
    problems += _stored_as_one(stages)
    for stage in stages:
        problems += [
            f"stage {stage.name!r} reads {artifact!r}, which no stage produces; add its producer or fix the name"
            for artifact in stage.inputs
            if artifact not in producers
        ]
        problems += [
            f"stage {stage.name!r}: input_roles gives role {role!r} to {artifact!r}, which is not one of its "
            f"inputs ({', '.join(stage.inputs) or 'none'}); add it to inputs or drop the role"
            for role, artifact in stage.input_roles.items()
            if artifact not in stage.inputs
        ]
        qualname = getattr(stage.fn, "__qualname__", "")
        if not callable(stage.fn) or "<" in qualname:
            problems.append(
                f"stage {stage.name!r}: fn {qualname or stage.fn!r} is not a module-level function; "
                "Ray pickles stage functions by reference, so define it at module level"
            )
        else:
            problems += _signature_problems(stage, qualname or repr(stage.fn))
    return problems


def _stored_as_one(stages: Sequence[Stage]) -> list[str]:
    """Stage names, or one stage's outputs, that differ but would be stored under one file name (``names``)."""
    problems = [
        f"stage names {' and '.join(map(repr, group))} are stored under one file name; rename one"
        for group in file_name_clashes(s.name for s in stages)
    ]
    for stage in stages:
        problems += [
            f"stage {stage.name!r}: outputs {' and '.join(map(repr, group))} are stored under one file name; rename one"
            for group in file_name_clashes(stage.outputs)
        ]
    return problems


def _signature_problems(stage: Stage, qualname: str) -> list[str]:
    """Whether the stage's function takes ``(ctx, inputs, params)`` positionally, as the runner calls it.

    Why here: a plug-in's ``def filter_labels(ctx, inputs)`` passed `relay validate`, and `relay run`
    failed with a TypeError only once the stages before it had run. A signature inspect cannot read
    (a builtin) is taken on trust.
    """
    try:
        signature = inspect.signature(stage.fn)
    except (TypeError, ValueError):
        return []
    try:
        signature.bind(None, None, None)
    except TypeError as exc:
        return [
            f"stage {stage.name!r}: fn {qualname}{signature} cannot be called as fn(ctx, inputs, params) ({exc}); "
            "a stage function takes the context, its inputs and its params positionally: "
            "def fn(ctx, inputs, params) -> StageResult"
        ]
    return []


def _cycle_problems(graph: Mapping[str, set[str]]) -> list[str]:
    """Report a dependency cycle by its members (graphlib finds one at a time)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        members = exc.args[1]
        return [f"dependency cycle: {' -> '.join(members)}; break it by renaming an input or output"]
    return []
