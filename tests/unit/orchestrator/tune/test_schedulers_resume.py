"""Synchronous successive halving after `relay tune --resume`: a rung decided after the resume stops its losers.

Ray Tune does not save the scheduler: a resumed sweep gets a fresh one, and Tune hands it the
restored trials as PENDING (``_requeue_restored_trials``) and starts every PENDING trial whatever the
scheduler chooses (``_maybe_add_actors``). ``TuneLoop`` does those two things as Tune does, on real
Trial objects saved and restored through Tune's own json state, one generation per step.

Before the fix, a restored trial that was waiting at a rung ran on as soon as the sweep resumed:
the reviewer's sweep (4 learning rates, reduction factor 2) logged that 2 of 4 trials go on at
generation 1, then ran all 4 to the end.
"""

from __future__ import annotations

import logging

import pytest
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.tune.schedulers import TIME_ATTR, SuccessiveHalving

METRIC = "evaluate/balanced_accuracy"
ENDED = (Trial.TERMINATED, Trial.ERROR)


class TuneLoop:
    """Ray Tune's controller as the scheduler meets it: add, choose, start every PENDING trial, report, stop."""

    def __init__(self, scheduler: SuccessiveHalving, curves: dict[str, list[float]], max_t: int, slots: int) -> None:
        self.scheduler, self.curves, self.max_t, self.slots = scheduler, curves, max_t, slots
        self.trials: list[Trial] = []
        self.checkpoints: dict[str, int] = {}  # trial id -> the generation its checkpoint holds
        self.pausing: set[str] = set()  # trials Tune pauses on their next checkpoint (``_cached_trial_decisions``)

    def add_trial(self, trial: Trial) -> None:
        """TuneController.add_trial: the scheduler sees the trial first, then Tune files it under its status."""
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        """TuneController.stop_trial: a waiting trial is removed, a running one completes."""
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.set_status(Trial.TERMINATED)

    def run(self) -> None:
        for _ in range(100):
            chosen = self.scheduler.choose_trial_to_run(self)
            if chosen is not None:
                chosen.set_status(Trial.PENDING)  # Tune stages the chosen trial as PENDING
            for trial in self.trials:  # ...and starts every PENDING trial there is room for
                if trial.status == Trial.PENDING and self.running() < self.slots:
                    trial.set_status(Trial.RUNNING)
            if not self.running():
                assert all(t.status in ENDED for t in self.trials), "trials wait, none runs: the sweep hangs"
                return
            for trial in [t for t in self.trials if t.status == Trial.RUNNING]:
                if trial.status == Trial.RUNNING:  # a halving on an earlier report may have stopped it
                    self.run_generation(trial)
        raise AssertionError("the sweep did not end")

    def running(self) -> int:
        return sum(t.status == Trial.RUNNING for t in self.trials)

    def run_generation(self, trial: Trial) -> None:
        """The next generation from the trial's checkpoint, and the scheduler's answer (or a pause Tune still owed)."""
        generation = self.checkpoints.get(trial.trial_id, 0) + 1
        result = {TIME_ATTR: generation, METRIC: self.curves[trial.trial_id][generation - 1]}
        trial.update_last_result(result)
        self.checkpoints[trial.trial_id] = generation
        action = self.scheduler.on_trial_result(self, trial, result)
        if trial.trial_id in self.pausing and action != TrialScheduler.STOP:
            self.pausing.discard(trial.trial_id)
            action = TrialScheduler.PAUSE
        if action == TrialScheduler.PAUSE:
            trial.set_status(Trial.PAUSED)
        elif action == TrialScheduler.STOP or generation == self.max_t:
            self.scheduler.on_trial_complete(self, trial, result)
            trial.set_status(Trial.TERMINATED)


def reached(trial: Trial) -> int:
    return trial.last_result.get(TIME_ATTR, 0)


def saved(trial_id: str, status: str, scores: list[float]) -> tuple[str, str]:
    """A trial's entry in Tune's experiment state at the interrupt: it reported ``scores``, one a generation."""
    trial = Trial("run_trial", stub=True, trial_id=trial_id)
    trial.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])
    for generation, score in enumerate(scores, start=1):
        trial.update_last_result({TIME_ATTR: generation, METRIC: score})
    trial.set_status(status)
    return trial.get_json_state()


def resume(loop: TuneLoop, state: list[tuple[str, str]], pausing: str | None = None) -> None:
    """TuneController._requeue_restored_trials with resume_unfinished: unfinished trials come back PENDING.

    ``pausing``: the trial Tune was pausing at the interrupt. Its state holds the result but not the
    checkpoint that was being saved (it starts again from scratch), and the pause, which Tune carries
    out on its next checkpoint.
    """
    for json_state, run_metadata in state:
        trial = Trial.from_json_state(json_state, stub=True)
        trial.restore_run_metadata(run_metadata)
        if trial.status not in ENDED:
            trial.set_status(Trial.PENDING)
        if trial.trial_id == pausing:
            loop.pausing.add(pausing)
        else:
            loop.checkpoints[trial.trial_id] = reached(trial)
        loop.add_trial(trial)


def sha(trials: int, max_t: int) -> SuccessiveHalving:
    """A fresh scheduler, as ``--resume`` unpickles it from the Tuner: it knows nothing of the first run."""
    scheduler = SuccessiveHalving(grace_period=1, reduction_factor=2, max_t=max_t, trials=trials, concurrency=4)
    scheduler.set_search_properties(METRIC, "max")
    return scheduler


def test_a_rung_decided_after_the_resume_stops_the_restored_trials_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    """The reviewer's sweep: interrupted while 3 trials waited at generation 1 and the 4th ran it."""
    curves = {"t0": [0.34, 0.29], "t1": [0.19, 0.1], "t2": [0.195, 0.185], "t3": [0.475, 0.395]}
    state = [
        saved("t0", Trial.PAUSED, curves["t0"][:1]),
        saved("t1", Trial.PAUSED, curves["t1"][:1]),
        saved("t2", Trial.PAUSED, curves["t2"][:1]),
        saved("t3", Trial.RUNNING, []),  # cut off before it reported generation 1
    ]
    loop = TuneLoop(sha(trials=4, max_t=2), curves, max_t=2, slots=4)
    with caplog.at_level(logging.INFO, logger="orchestrator.tune.schedulers"):
        resume(loop, state)
        loop.run()
    generations = {t.trial_id: reached(t) for t in loop.trials}
    assert generations == {"t0": 2, "t1": 1, "t2": 1, "t3": 2}  # before the fix: 2 for every trial
    dropped = [t for t in loop.trials if t.trial_id in ("t1", "t2")]
    assert all(t.status == Trial.TERMINATED and t.last_result.get("done") for t in dropped)  # table: stopped early
    said = [record.getMessage() for record in caplog.records]
    assert "trial t1 waits at generation 1 again (restored by --resume)" in said
    assert any(line.startswith("successive halving at generation 1: 2 of 4 trial(s) go on (t3, t0)") for line in said)


def test_a_rung_decided_before_the_interrupt_keeps_the_trial_that_had_passed_it() -> None:
    """Rungs at generations 1 and 2 of 4. Before the interrupt generation 1 kept a (0.6) and b (0.5);
    a then fell to 0.2 at generation 2 and waited there; b was running generation 2.

    After the resume, generation 1 is decided again from the restored results, where a's score is its
    generation-2 value (0.2, below the stopped c and d): a had passed the rung, so it is kept again and
    beats b (0.1) at generation 2. Ranked by that score, a would be stopped while it waits at generation 2
    and b would run to the end. (The code before the fix passes too: it never held a, which ran on.)
    """
    curves = {"a": [0.6, 0.2, 0.3, 0.4], "b": [0.5, 0.1, 0.1, 0.1], "c": [0.4], "d": [0.3]}
    state = [
        saved("a", Trial.PAUSED, curves["a"][:2]),
        saved("b", Trial.RUNNING, curves["b"][:1]),
        saved("c", Trial.TERMINATED, curves["c"]),
        saved("d", Trial.TERMINATED, curves["d"]),
    ]
    loop = TuneLoop(sha(trials=4, max_t=4), curves, max_t=4, slots=4)
    resume(loop, state)
    loop.run()
    assert {t.trial_id: reached(t) for t in loop.trials} == {"a": 4, "b": 2, "c": 1, "d": 1}


def test_a_restored_trial_that_ended_without_reaching_the_rung_does_not_hold_it_up() -> None:
    """d ended before generation 1 and is not resumed: the rung is decided among the 3 that reached it."""
    curves = {"a": [0.6, 0.5], "b": [0.5, 0.4], "c": [0.4, 0.3], "d": []}
    state = [
        saved("a", Trial.PAUSED, curves["a"][:1]),
        saved("b", Trial.PAUSED, curves["b"][:1]),
        saved("c", Trial.PAUSED, curves["c"][:1]),
        saved("d", Trial.TERMINATED, []),
    ]
    loop = TuneLoop(sha(trials=4, max_t=2), curves, max_t=2, slots=4)
    resume(loop, state)
    loop.run()
    assert {t.trial_id: reached(t) for t in loop.trials} == {"a": 2, "b": 2, "c": 1, "d": 0}


def test_a_kept_trial_that_tune_pauses_again_after_the_resume_goes_on() -> None:
    """The Ctrl-C came while Tune was pausing t0 at generation 1. After the resume, generation 1 keeps t0
    (0.34); Tune reruns t0's generation 1 and pauses it again on its checkpoint, whatever the scheduler
    answered. Before the fix nothing resumed it (the scheduler had not paused it): the sweep hung."""
    curves = {"t0": [0.34, 0.29], "t1": [0.19, 0.1], "t2": [0.195, 0.185], "t3": [0.475, 0.395]}
    state = [
        saved("t0", Trial.RUNNING, curves["t0"][:1]),
        saved("t1", Trial.PAUSED, curves["t1"][:1]),
        saved("t2", Trial.PAUSED, curves["t2"][:1]),
        saved("t3", Trial.RUNNING, []),
    ]
    loop = TuneLoop(sha(trials=4, max_t=2), curves, max_t=2, slots=4)
    resume(loop, state, pausing="t0")
    loop.run()
    assert {t.trial_id: reached(t) for t in loop.trials} == {"t0": 2, "t1": 1, "t2": 1, "t3": 2}
