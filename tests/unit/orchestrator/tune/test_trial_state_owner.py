"""A trial's checkpoint names the trial that wrote it, so a trial started from another's (a PBT clone) knows it."""

from __future__ import annotations

import json

from orchestrator.tune.trial import TrialState


def test_the_trial_that_wrote_a_state_survives_its_checkpoint_a_mutation_and_a_report() -> None:
    state = TrialState([(0, {"train.lr": 0.1})], trial_id="abcde_00002").after(0, 0.4)
    mutated = state.continue_with({"train.lr": 0.01}).after(1, 0.5)
    assert mutated.trial_id == "abcde_00002"
    assert TrialState.from_json(mutated.to_json()) == mutated


def test_a_checkpoint_written_before_the_trial_was_kept_names_none() -> None:
    older = json.dumps({"segments": [[0, {"train.lr": 0.1}]], "next_generation": 1, "reported": {"0": 0.4}})
    assert TrialState.from_json(older).trial_id == ""
