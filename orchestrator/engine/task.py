"""One stage attempt as a single value: what an executor needs to run it anywhere.

Why one record: the same seven facts (the stage, its fingerprint, its input refs, the store,
the run, the seed, the attempt) travel from the runner through an executor into a Ray task,
a Ray Train worker or an actor pool's coordinator. Passed as one frozen, picklable value they
cannot drift out of order between those layers, and a retry is the same task with the next
attempt number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.dag import ProgressSink, Stage
from orchestrator.engine.manifests import ArtifactRef


@dataclass(frozen=True)
class StageTask:
    """One attempt of one stage, with everything a worker needs to run it and store its outputs.

    ``input_refs`` name the stored inputs (the worker loads them from ``store_uri``: a stage's
    data never travels through the driver); ``seed`` is the run's seed (for an unseeded stage,
    ``Stage.seeded`` False, a fixed one: ``fingerprint.task_seed``), from which the stage draws its
    own stream; ``attempt`` counts from 1. ``progress`` is where the stage's progress
    goes (the run's progress board, wired by the executor); None sends it nowhere.
    """

    stage: Stage
    fingerprint: str
    input_refs: Mapping[str, ArtifactRef]
    store_uri: str
    run_id: str
    seed: int
    attempt: int = 1
    progress: ProgressSink | None = None

    def retry(self) -> StageTask:
        """The same stage with the next attempt number (its fingerprint and inputs do not change)."""
        return dataclasses.replace(self, attempt=self.attempt + 1)
