"""A resumed sweep runs no more than its concurrency trials at once, whatever its scheduler (``ConcurrencyCap``).

``--resume`` hands Tune's scheduler every failed and unfinished trial as PENDING
(``_requeue_restored_trials``), and Tune starts every PENDING trial whatever the scheduler chooses
(``_maybe_add_actors``); the search algorithm limits only the trials it suggests. ``TuneLoop`` does
those things as Tune does, on real Trial objects restored through Tune's own json state, with room
for every trial, so only the scheduler can hold one back. Each scheduler is the one
``sweep.tune_config`` gives the sweep, as ``relay tune`` builds it.

Before the fix, QA's sweep with ``tune.max_concurrent_trials=1`` ran 4 trials at once after its resume.
"""

from __future__ import annotations

import logging

import pytest
from ray.tune.execution.placement_groups import PlacementGroupFactory
from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

from orchestrator.config import TuneSettings
from orchestrator.tune.schedulers import TIME_ATTR, ConcurrencyCap
from orchestrator.tune.sweep import tune_config

METRIC = "evaluate/balanced_accuracy"
GENERATIONS = 2
ENDED = (Trial.TERMINATED, Trial.ERROR)
SCHEDULERS = ["asha", "sha", "pbt", "pb2", "none"]


class TuneLoop:
    """Ray Tune's controller as a scheduler meets it: add, choose, start every PENDING trial, report, complete."""

    search_alg = None  # PBT's on_trial_add asks for it

    def __init__(self, scheduler: TrialScheduler) -> None:
        self.scheduler = scheduler
        self.trials: list[Trial] = []
        self.most_at_once = 0

    def add_trial(self, trial: Trial) -> None:
        """TuneController.add_trial: the scheduler sees the trial first, then Tune files it under its status."""
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        """TuneController.stop_trial (SHA stops the losers of a rung that wait at it)."""
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        trial.set_status(Trial.TERMINATED)

    def run(self) -> None:
        for _ in range(100):
            chosen = self.scheduler.choose_trial_to_run(self)
            if chosen is not None:
                chosen.set_status(Trial.PENDING)  # Tune stages the chosen trial as PENDING...
            for trial in self.trials:  # ...and starts every PENDING trial: the cluster has room for all
                if trial.status == Trial.PENDING:
                    trial.set_status(Trial.RUNNING)
            running = [t for t in self.trials if t.status == Trial.RUNNING]
            self.most_at_once = max(self.most_at_once, len(running))
            if not running:
                assert all(t.status in ENDED for t in self.trials), "trials wait, none runs: the sweep hangs"
                return
            for trial in running:
                if trial.status == Trial.RUNNING:  # a decision on an earlier report may have stopped it
                    self.run_generation(trial)
        raise AssertionError("the sweep did not end")

    def run_generation(self, trial: Trial) -> None:
        generation = trial.last_result.get(TIME_ATTR, 0) + 1
        result = {TIME_ATTR: generation, METRIC: 0.5 + generation / 10}  # every trial learns alike
        trial.update_last_result(result)
        action = self.scheduler.on_trial_result(self, trial, result)
        if action == TrialScheduler.PAUSE:
            trial.set_status(Trial.PAUSED)
        elif action == TrialScheduler.STOP or generation == GENERATIONS:
            self.scheduler.on_trial_complete(self, trial, result)
            trial.set_status(Trial.TERMINATED)


def capped(scheduler: str, concurrency: int, trials: int) -> TrialScheduler:
    """The sweep's scheduler as ``relay tune`` builds it, fresh: ``--resume`` unpickles it from tuner.pkl."""
    grid = {"train.lr": {"grid": [0.01 * (i + 1) for i in range(trials)]}}
    space, samples = ({"train.lr": {"loguniform": [0.01, 0.1]}}, trials) if scheduler == "pb2" else (grid, 1)
    # perturbation_interval past the last generation: PBT's perturbing needs Tune's checkpoints, which the loop has not
    settings = TuneSettings(
        metric=METRIC, scheduler=scheduler, seed=0, space=space, num_samples=samples, perturbation_interval=3
    )
    chosen = tune_config(settings, GENERATIONS, concurrency).scheduler
    chosen.set_search_properties(METRIC, "max")  # as Tune does before the first trial
    return chosen


def saved(trial_id: str, status: str, generations: int) -> tuple[str, str]:
    """A trial's entry in Tune's experiment state at the interrupt, after it reported ``generations``."""
    trial = Trial("run_trial", stub=True, trial_id=trial_id)
    trial.placement_group_factory = PlacementGroupFactory([{"CPU": 1}])
    for generation in range(1, generations + 1):
        trial.update_last_result({TIME_ATTR: generation, METRIC: 0.5 + generation / 10})
    trial.set_status(status)
    return trial.get_json_state()


def resume(loop: TuneLoop, state: list[tuple[str, str]]) -> None:
    """TuneController._requeue_restored_trials with resume_unfinished and resume_errored: all come back PENDING."""
    for json_state, run_metadata in state:
        trial = Trial.from_json_state(json_state, stub=True)
        trial.restore_run_metadata(run_metadata)
        if trial.status != Trial.TERMINATED:
            trial.set_status(Trial.PENDING)
        loop.add_trial(trial)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_resumed_sweep_of_one_trial_at_a_time_runs_its_restored_trials_one_at_a_time(scheduler: str) -> None:
    """QA's sweep: 3 trials failed (Tune's retries spent), the 4th ran when the sweep was interrupted.
    Before the fix all 4 ran at once after the resume (under SHA, b and c: it held a and d at their rung)."""
    state = [saved("a", Trial.ERROR, 1), saved("b", Trial.ERROR, 0), saved("c", Trial.ERROR, 0)]
    state.append(saved("d", Trial.RUNNING, 1))
    loop = TuneLoop(capped(scheduler, concurrency=1, trials=4))
    resume(loop, state)
    loop.run()
    assert loop.most_at_once == 1
    assert all(t.status == Trial.TERMINATED for t in loop.trials)
    if scheduler != "sha":  # SHA stops half the trials at generation 1; the others run every trial to the end
        assert {t.trial_id: t.last_result[TIME_ATTR] for t in loop.trials} == dict.fromkeys("abcd", GENERATIONS)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_resumed_sweep_of_two_at_a_time_runs_two_at_a_time(scheduler: str) -> None:
    state = [saved(trial_id, Trial.ERROR, 0) for trial_id in "abcd"] + [saved("e", Trial.RUNNING, 0)]
    state.append(saved("f", Trial.TERMINATED, GENERATIONS))  # finished before the interrupt: stays finished
    loop = TuneLoop(capped(scheduler, concurrency=2, trials=6))
    resume(loop, state)
    loop.run()
    assert loop.most_at_once == 2
    assert all(t.status == Trial.TERMINATED for t in loop.trials)


def test_the_first_restored_trial_starts_and_the_others_wait_until_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    loop = TuneLoop(capped("asha", concurrency=1, trials=3))
    with caplog.at_level(logging.INFO, logger="orchestrator.tune.schedulers"):
        resume(loop, [saved("a", Trial.RUNNING, 1), saved("b", Trial.ERROR, 1), saved("c", Trial.ERROR, 1)])
    assert [t.status for t in loop.trials] == [Trial.PENDING, Trial.PAUSED, Trial.PAUSED]
    assert "trial b waits until fewer than 1 trial(s) run" in [r.getMessage() for r in caplog.records]
    assert loop.scheduler.choose_trial_to_run(loop) is loop.trials[0]  # PENDING: Tune starts it anyway
    loop.trials[0].set_status(Trial.RUNNING)
    assert loop.scheduler.choose_trial_to_run(loop) is None  # ASHA would start b: it is paused, and Tune has room
    loop.trials[0].set_status(Trial.TERMINATED)
    assert loop.scheduler.choose_trial_to_run(loop) is loop.trials[1]


def test_a_trial_tune_retries_is_not_paused_again() -> None:
    """Tune files a retried trial PENDING itself before adding it again; it held a slot already.

    Paused by the cap there, Tune's own bookkeeping (``_set_trial_status``) would fail on its next start.
    """
    loop = TuneLoop(capped("none", concurrency=1, trials=2))
    resume(loop, [saved("a", Trial.RUNNING, 1), saved("b", Trial.RUNNING, 1)])
    b = loop.trials[1]
    b.set_status(Trial.RUNNING)  # b was started; a runs too (a retry's worst case)
    loop.trials[0].set_status(Trial.RUNNING)
    loop.scheduler.on_trial_error(loop, b)
    b.set_status(Trial.PENDING)
    loop.scheduler.on_trial_add(loop, b)
    assert b.status == Trial.PENDING


def test_a_new_sweep_is_left_as_its_search_runs_it() -> None:
    """A trial the search suggests under its own limit is never paused: the cap changes nothing there."""
    loop = TuneLoop(capped("asha", concurrency=2, trials=4))
    for trial_id in "ab":
        loop.add_trial(Trial("run_trial", stub=True, trial_id=trial_id))
    assert [t.status for t in loop.trials] == [Trial.PENDING, Trial.PENDING]


def test_the_cap_passes_on_what_tune_asks_of_the_scheduler() -> None:
    scheduler = capped("asha", concurrency=1, trials=2)
    assert isinstance(scheduler, ConcurrencyCap)
    assert scheduler.metric == METRIC
    assert "AsyncHyperBand" in scheduler.debug_string()
    assert ConcurrencyCap(HyperBandScheduler(), 1).supports_buffered_results is False  # Tune then sends one at a time
