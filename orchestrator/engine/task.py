"""One stage attempt as a single value: what an executor needs to run it anywhere.

Why one record: the same seven facts (the stage, its fingerprint, its input refs, the store,
the run, the seed, the attempt) travel from the runner through an executor into a Ray task,
a Ray Train worker or an actor pool's coordinator. Passed as one frozen, picklable value they
cannot drift out of order between those layers, and a retry is the same task with the next
attempt number.

The attempt is the run's, not the driver's: a resume (`relay resume`, a resume sent to another
cluster) starts a stage an earlier driver of the run began at the attempt after those the run
record counts, so the console's "attempt N", the ledger's ``attempts``, the Ray task's name and
MLflow's ``relay.attempt`` tell one story.
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
    own stream; ``attempt`` counts the run's attempts at the stage from 1, over every driver of the run
    (``attempts_before`` of them made by earlier drivers). ``progress`` is where the stage's progress
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
    attempts_before: int = 0

    @property
    def tries(self) -> int:
        """The attempts this driver has made, this one included: what a stage's ``retries`` is counted against.

        Why not ``attempt``: a resume is the user's new start after fixing a cause, and a stage that had
        used its retries before a kill or a failure gets them again, as it always did.
        """
        return self.attempt - self.attempts_before

    def retry(self) -> StageTask:
        """The same stage with the next attempt number (its fingerprint and inputs do not change)."""
        return dataclasses.replace(self, attempt=self.attempt + 1)
