"""The labeling actors a run keeps between its stages: how many, started when, let go when.

A sharded stage labels on its own task and ``workers - 1`` actors. Actors kept warm for the run
spare every later labeling stage their start (torch imported, the dataset cached), but hold their
CPUs and GPUs between stages, so how many to keep is a policy of its own (``kept_workers``), and
``KeptActors`` is the bookkeeping ``RayExecutor`` hands each sharded stage's task its actors from:
kept pools, the calls using them, and letting them go when the cluster shrinks or the run stalls.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from orchestrator.dag import Pipeline, Resources
from orchestrator.engine.actor_pool import ActorPool, StageActors
from orchestrator.engine.fit import uses_actor_pool

logger = logging.getLogger(__name__)


def kept_workers(pipeline: Pipeline, total: Mapping[str, float]) -> dict[Resources, int]:
    """How many actors of each labeling pool stay up for the whole run: as many as leave every stage room.

    A sharded stage of k workers runs on its own task and k - 1 actors, so at most k - 1 are kept.

    Why: kept actors hold their CPUs and GPUs between stages. On 3 CPUs, the 2 actors of a
    3-worker labeling stage kept after g00/pseudo_label would leave a 2-CPU g01/train waiting
    forever; keeping one of them leaves train its CPUs, and each later labeling stage starts on
    its own task and that warm actor while the other starts. So a pool keeps the most actors
    (up to its workers - 1, pools in a fixed order)
    with which, in the cluster's ``total`` (``ray.cluster_resources()``), every other stage fits
    beside all kept actors, and every sharded stage's full pool beside the other pools' kept
    ones. Stages running side by side only wait for each other (they finish); a kept actor never
    does, and an actor of a call that waits for a CPU holds no shards back (``map_on_actors``).
    A pipeline with a stage pinned by ``resources.<stage>.custom`` keeps none: a kept actor may
    take the only CPU of the node the pinned stage must run on, which totals cannot show.
    """
    pools = sorted({stage.resources for stage in pipeline.stages if uses_actor_pool(stage)}, key=repr)
    others = [stage.resources for stage in pipeline.stages if not uses_actor_pool(stage)]
    kept = dict.fromkeys(pools, 0)
    if any(stage.resources.custom for stage in pipeline.stages):
        return kept  # pinned stages: totals say nothing of the one node a kept actor could fill (see docstring)

    def fits(pool: Resources, count: int) -> bool:
        trial = {**kept, pool: count}
        demands = [(r, r.workers) for r in others] + [(r, r.workers - trial[r]) for r in pools]
        for key, need in (("CPU", lambda r: r.num_cpus), ("GPU", lambda r: r.num_gpus)):
            held = sum(need(r) * n for r, n in trial.items())
            if held + max((need(r) * n for r, n in demands), default=0.0) > total.get(key, 0.0):
                return False
        return True

    for pool in pools:
        kept[pool] = next((n for n in range(pool.workers - 1, 0, -1) if fits(pool, n)), 0)
    return kept


def kept_message(kept: int, workers: int) -> str:
    """What the run log says about a pool: how many of its ``workers - 1`` actors stay up between stages, and why not all."""
    actors = workers - 1
    if kept == actors:
        return "kept for the run"
    if kept == 0:
        return "one pool per stage call (no room to keep them)"
    return f"{kept} of {actors} kept for the run, the others started per stage call (no room to keep them all)"


class KeptActors:
    """A run's actor pools: per stage ``Resources``, as many actors kept warm for the run as ``plan`` finds room
    for beside every other stage (``kept_workers``), the rest started for one stage call and released when it
    ends. A stage that fails on kept actors releases them, so the retry starts on fresh ones. Pools a smaller
    cluster no longer keeps (``refit``) that a stage call in flight still holds are retiring: let go once no
    call that could be using them runs (``let_go_retiring``, ``release``).
    """

    def __init__(self) -> None:
        self._kept: dict[Resources, int] = {}  # actors of each pool kept for the run
        self._pools_to_start: list[tuple[Resources, str]] = []  # (resources, a stage that uses them)
        self._pools: dict[Resources, ActorPool] = {}  # the kept actors
        self._retiring: list[ActorPool] = []  # no longer kept (``refit``), still held by a stage call in flight
        self._pool_of: dict[Any, StageActors] = {}  # in-flight sharded stage -> its actors
        self._pools_started = 0  # pools get numbered names in Ray: a retry's pool never meets its predecessor's
        self._tag = uuid.uuid4().hex[:8]  # ... and this executor's tag: never another executor's (``_next_pool_label``)
        self._pipeline: Pipeline | None = None  # what the kept actors were sized for ...
        self._sized_for: dict[str, float] = {}  # ... in a cluster of these resources
        self._kept_let_go = False  # set once a stalled run let its kept actors go: it keeps none after that

    def plan(self, pipeline: Pipeline, total: dict[str, float]) -> None:
        """Decide how many actors of each pool stay up for ``pipeline`` in a cluster of ``total``, and say so.

        Only before the first stage is every stage known; the pools start with ``start_planned``.
        """
        pooled = sorted({s.resources: s.name for s in pipeline.stages if uses_actor_pool(s)}.items(), key=repr)
        self._pipeline, self._sized_for = pipeline, total
        self._kept = kept_workers(pipeline, self._sized_for)
        self._pools_to_start = [(resources, stage) for resources, stage in pooled if self._kept[resources]]
        for resources, _ in pooled:
            logger.info("labeling actors: %s", kept_message(self._kept[resources], resources.workers))

    def start_planned(self) -> None:
        """Start the kept pools ``plan`` decided on (beside the first stage: the first labeling stage finds them started)."""
        for resources, stage in self._pools_to_start:
            self._kept_pool(resources, stage)
        self._pools_to_start = []

    def _kept_pool(self, resources: Resources, stage: str) -> ActorPool | None:
        """The actors kept for ``resources`` (started on first use), or None where none are kept."""
        if resources not in self._pools and self._kept.get(resources, 0):
            self._pools[resources] = self._start_pool(resources, stage, self._kept[resources])
        return self._pools.get(resources)

    def _start_pool(self, resources: Resources, stage: str, count: int) -> ActorPool:
        """``count`` new actors, named in Ray after the kind of stage they serve and their pool
        (``pseudo_label pool 3fa9c2d0-2 worker 0``)."""
        return ActorPool.start(resources, self._next_pool_label(stage), count)

    def _next_pool_label(self, stage: str) -> str:
        """``pseudo_label pool TAG-N``: the kind of stage the actors serve, this executor's tag, and a number no
        earlier pool of this executor had.

        Why the tag: actor names are unique in a Ray job's namespace, and a sweep's trials, each with
        an executor of its own, run in one job. Numbered from 1 alone, two trials labeling at once
        both named an actor ``pseudo_label pool 1 worker 0``; the second one's start failed
        (``ActorAlreadyExistsError``), and so did its stage and trial, again on every retry. A random
        tag per executor (8 hex digits) keeps the names apart; the number keeps a retry's pool apart
        from its predecessor's, whose actors may not be gone yet.
        """
        self._pools_started += 1
        return f"{stage.rsplit('/', 1)[-1]} pool {self._tag}-{self._pools_started}"

    def for_call(self, resources: Resources, stage: str) -> StageActors:
        """A stage call's actors: the kept ones, and how many more its task starts (``StageActors``).

        The stage's own task is its first worker, so a call needs ``workers - 1`` actors.
        """
        kept = self._kept_pool(resources, stage) or ActorPool(resources, ())
        extra = resources.workers - 1 - len(kept.actors)
        return StageActors(kept, extra, self._next_pool_label(stage) if extra else "")

    def release(self, ref: Any, failed: bool) -> None:
        """After a sharded stage: its kept actors go only if it failed (the retry starts on fresh ones), or if
        they are no longer kept (``refit``), once no other call in flight holds them; the actors its task
        started, it stopped itself."""
        call = self._pool_of.pop(ref, None)
        if call is None or not call.kept.actors:
            return
        pool = call.kept
        kept = self._pools.get(pool.resources)
        still_kept = kept is not None and kept.includes(pool)
        if still_kept and not failed:
            return
        if still_kept:
            del self._pools[pool.resources]
        if self._holders(pool):  # another stage call labels on them too: they go when the last one ends
            if all(p is not pool for p in self._retiring):
                self._retiring.append(pool)
            return
        self._retiring = [p for p in self._retiring if p is not pool]
        pool.shutdown()

    def _holders(self, pool: ActorPool) -> list[Any]:
        """The stage calls in flight (their task refs) that were handed ``pool``'s actors."""
        return [ref for ref, call in self._pool_of.items() if call.kept.actors and call.kept.includes(pool)]

    def track(self, ref: Any, call: StageActors) -> None:
        """Remember the actors of the stage task ``ref`` until it ends (``release``)."""
        self._pool_of[ref] = call

    def refit(self, total: dict[str, float]) -> None:
        """A cluster that lost a node keeps only the actors that still leave every stage room.

        Why: the kept actors were sized against the whole cluster; after a node is lost they may
        hold the CPUs a stage (Ray Train's new worker group, a retried stage) now waits for,
        forever. Pools the smaller cluster cannot keep are let go: idle ones at once; one that a
        stage call in flight holds retires, and goes as soon as none of its holders runs
        (``let_go_retiring``: a holder still waiting for a place may be waiting for the very CPUs
        it holds) or when the last holder ends (``release``). Their stages then start actors per
        call, as on a small cluster. ``total``: ``ray.cluster_resources()`` now.
        """
        if self._pipeline is None:
            return
        if all(total.get(key, 0.0) >= value for key, value in self._sized_for.items()):
            return  # as large as it was (or larger: kept actors never grow mid-run)
        self._sized_for = total
        self._kept = dict.fromkeys(self._kept, 0) if self._kept_let_go else kept_workers(self._pipeline, total)
        for resources, pool in list(self._pools.items()):
            if len(pool.actors) > self._kept.get(resources, 0):
                del self._pools[resources]
                if self._holders(pool):
                    self._retiring.append(pool)
                else:
                    pool.shutdown()
                logger.warning(
                    "the cluster shrank to %s CPU / %s GPU: labeling actors now %s",
                    total.get("CPU", 0),
                    total.get("GPU", 0),
                    kept_message(self._kept.get(resources, 0), resources.workers),
                )

    def retiring(self) -> bool:
        """Whether pools ``refit`` no longer keeps still wait for their holders (``let_go_retiring``)."""
        return bool(self._retiring)

    def let_go_retiring(self, waiting: Collection[Any] | None) -> None:
        """Let the retiring pools go whose every holder still waits for a place.

        ``waiting``: the task refs of the stage calls Ray has not placed; None when Ray cannot say,
        and then every holder counts as waiting. Why: a holder waiting for a place may wait for the
        CPUs its own retiring actors hold (a cluster shrunk to 1 CPU, held by the run's kept actor:
        its labeling stage waited for good). A holder that runs may be labeling on them; killed
        under it, its stage would fail and be retried, so they wait for its end (``release``).
        """
        for pool in list(self._retiring):
            if waiting is None or all(ref in waiting for ref in self._holders(pool)):
                self._retiring.remove(pool)
                pool.let_go()

    def idle_kept(self) -> bool:
        """Whether the run still holds kept actors it could let go (``let_go``): kept ones, or retiring ones."""
        return bool(self._pools or self._retiring) and not self._kept_let_go

    def let_go(self) -> None:
        """Let every kept and retiring actor go; the run's labeling stages start theirs per call from now on.

        Asked while no stage call runs on them (every one in flight waits for a place, or none is in flight),
        so they leave rather than die (``ActorPool.let_go``): a waiting call that held them is not told it lost them.
        """
        for pool in [*self._pools.values(), *self._retiring]:
            pool.let_go()
        self._pools.clear()
        self._retiring.clear()
        self._kept = dict.fromkeys(self._kept, 0)
        self._kept_let_go = True

    def held(self) -> dict[str, float]:
        """The CPUs and GPUs the run's kept and retiring actors hold between them (what ``let_go`` frees)."""
        pools = [*self._pools.values(), *self._retiring]
        return {
            "CPU": sum(p.resources.num_cpus * len(p.actors) for p in pools),
            "GPU": sum(p.resources.num_gpus * len(p.actors) for p in pools),
        }

    def shutdown(self, stop: bool) -> None:
        """Forget every pool; with ``stop`` (Ray is still up), stop their actors first."""
        if stop:
            pools = [*self._pools.values(), *self._retiring, *(c.kept for c in self._pool_of.values())]
            for pool in {id(p): p for p in pools}.values():
                pool.shutdown()
        self._pools.clear()
        self._retiring.clear()
        self._pool_of.clear()
