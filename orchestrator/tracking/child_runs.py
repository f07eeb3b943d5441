"""The generation and stage runs under one pipeline run: made on first use, reopened on a resume, closed at its end.

Apart from the tracker because their bookkeeping is its own: which ``gen-NN`` exists and which this
attempt set RUNNING, which stage runs are open, how many attempts each stage has had, which
generations failed. The tracker owns the pipeline run, the client and the failure guard; it hands
the client to every call here, so one client reaches the store and the guard sees every failure.
Each run's name says whose it is (``tree_run_name``): ``gen-01 of smoke-20261205-070000-ab12``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.tracking.common import (
    TAG_FINGERPRINT,
    TAG_GENERATION,
    TAG_KIND,
    TAG_PARENT,
    TAG_PIPELINE_RUN,
    TAG_STAGE,
    TAG_STATUS,
    log_params,
)
from orchestrator.tracking.descriptions import TAG_NOTE
from orchestrator.tracking.interruptions import INTERRUPTED, TAG_ATTEMPT, attempts_so_far, mark_interrupted
from orchestrator.tracking.pipeline_run import CUT_SHORT, RELAY_WORD, find_runs
from orchestrator.tracking.run_tree import generation_params


def tree_run_name(own: str, run_id: str) -> str:
    """``gen-01 of smoke-20261205-070000-ab12``, ``g01/train of ...``: a run's own name, then its Relay run's.

    Why: every pipeline run's generations were ``gen-00``, ``gen-01`` and its stages ``g00/train``, so
    where MLflow lists runs of several pipeline runs side by side (a search, the compare view, a
    chart's legend) they read alike. The own name comes first: the runs table shows a name's first
    20 or so characters, and a run id in front (26 characters, more for a chosen ``--run-id``) hid
    the generation even in the tree under its pipeline run. Nothing finds a run by this name: the
    readers go by tags (``relay.pipeline_run``, ``relay.kind``, ``relay.generation``, ``relay.stage``).
    """
    return f"{own} of {run_id}"


class ChildRuns:
    """The runs below one pipeline run, by generation and by stage name."""

    def __init__(
        self, experiment_id: str, run_id: str, parent: str, source: Mapping[str, str], params: Mapping[str, str]
    ) -> None:
        # source: mlflow.source.* of every run of the tree; params: the run's, which each generation run gets too
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.parent = parent
        self.source = dict(source)
        self.params = dict(params)
        self.generations: dict[int, str] = {}
        self.reopened: set[int] = set()  # generation runs set RUNNING by this attempt (created or reattached)
        self.open_stages: dict[str, str] = {}
        self.attempts: dict[str, int] = {}  # stage name -> the highest attempt its MLflow runs of this run were tagged
        self.failed_generations: set[int] = set()
        self.finished: dict[tuple[str, str], str] = {}  # (stage, fingerprint) -> its FINISHED run: logged once

    def adopt(self, client: Any) -> None:
        """Take over an earlier attempt's generation runs, note the attempts its stage runs were tagged and those
        that finished.

        A stage run its dead driver left RUNNING (or closed KILLED without a word) is marked interrupted:
        that attempt will never finish.
        """
        for run in find_runs(client, self.experiment_id, self.run_id, "generation"):
            self.generations.setdefault(int(run.data.tags[TAG_GENERATION]), run.info.run_id)
        stage_runs = find_runs(client, self.experiment_id, self.run_id, "stage")
        self.attempts.update(attempts_so_far(stage_runs))
        for run in stage_runs:
            if run.info.status in ("RUNNING", "KILLED"):  # its driver died mid-stage: that attempt will never finish
                mark_interrupted(client, run)
            if run.info.status == "FINISHED":
                key = (run.data.tags[TAG_STAGE], run.data.tags.get(TAG_FINGERPRINT, ""))
                self.finished.setdefault(key, run.info.run_id)

    def generation(self, client: Any, generation: int) -> str:
        """The generation's run, created on first use."""
        if generation not in self.generations:
            tags = {
                TAG_PARENT: self.parent,
                TAG_PIPELINE_RUN: self.run_id,
                TAG_KIND: "generation",
                TAG_GENERATION: str(generation),
                TAG_NOTE: f"Generation {generation} of Relay run `{self.run_id}`.",
                **self.source,
            }
            run = client.create_run(self.experiment_id, tags=tags, run_name=self._generation_name(generation))
            log_params(client, run.info.run_id, generation_params(self.params, generation))
            self.generations[generation] = run.info.run_id
            self.reopened.add(generation)
        elif generation not in self.reopened:  # an earlier attempt's: running again, whatever it ended as
            self.reopened.add(generation)  # renamed too: one made before its name said whose it is (`gen-00`)
            client.update_run(self.generations[generation], status="RUNNING", name=self._generation_name(generation))
            client.set_tag(self.generations[generation], TAG_STATUS, "RUNNING")
        return self.generations[generation]

    def next_attempt(self, stage_name: str, attempt: int | None) -> int:
        """The number a new attempt of the stage is tagged with: the engine's ``attempt``, which the run record
        counts over the run's drivers, and never less than one past the highest tag already on its runs.

        Why the engine's: the tracker counting its own runs said `relay.attempt` 2 for a resumed stage the
        console and the ledger called attempt 1. Why still the floor: a run recorded by older Relay, whose
        ledger counted one driver's attempts only, must not tag a second attempt 2 again (None: no number
        given, the floor alone).
        """
        number = max(attempt or 0, self.attempts.get(stage_name, 0) + 1)
        self.attempts[stage_name] = number
        return number

    def retag_stage(self, client: Any, stage_name: str, attempt: int | None) -> None:
        """A retry inside this driver: the stage's open run takes the retry's number, as the console says it."""
        client.set_tag(self.open_stages[stage_name], TAG_ATTEMPT, str(self.next_attempt(stage_name, attempt)))

    def new_stage(
        self, client: Any, stage_name: str, generation: int | None, attempt: int | None = None, cached: bool = False
    ) -> str:
        """A stage's run, tagged with its attempt: an interrupted attempt's run and its resume's read apart.

        ``cached``: the run records a cache hit, no attempt; its tag is ``attempt`` as given (the attempts the
        run had made at the stage, 0 for none) and counts toward no later number.
        """
        parent = self.parent if generation is None else self.generation(client, generation)
        number = (attempt or 0) if cached else self.next_attempt(stage_name, attempt)
        tags = {
            TAG_PARENT: parent,
            TAG_PIPELINE_RUN: self.run_id,
            TAG_KIND: "stage",
            TAG_STAGE: stage_name,
            TAG_ATTEMPT: str(number),
            **self.source,
        }
        if generation is not None:
            tags[TAG_GENERATION] = str(generation)
        return client.create_run(
            self.experiment_id, tags=tags, run_name=tree_run_name(stage_name, self.run_id)
        ).info.run_id

    def _generation_name(self, generation: int) -> str:
        return tree_run_name(f"gen-{generation:02d}", self.run_id)

    def close_stage(self, client: Any, stage_name: str, run: str, status: str) -> None:
        client.set_terminated(run, status=status)
        del self.open_stages[stage_name]

    def close_open_stages(self, client: Any) -> None:
        """Stage runs opened but never finished (Ctrl-C, a stop mid-stage) end KILLED, not RUNNING forever.

        A stage that ends reports through stage_finished, which closes its run; one still open
        when the pipeline ends was cut off.
        """
        for stage_name, run in list(self.open_stages.items()):
            client.set_terminated(run, status="KILLED")
            client.set_tag(run, TAG_STATUS, INTERRUPTED)
            del self.open_stages[stage_name]

    def close_generations(self, client: Any, status: str) -> None:
        """Every generation run ended as the pipeline run's ``status`` says, unless its own stages failed it."""
        others = "KILLED" if status in CUT_SHORT else "FINISHED"  # a generation fails only by its own stages
        word = RELAY_WORD.get(status, status)
        for generation, run in self.generations.items():
            ended = "FAILED" if generation in self.failed_generations else others
            client.set_terminated(run, status=ended)
            client.set_tag(run, TAG_STATUS, word if ended == "KILLED" else ended)
        self.reopened.clear()
