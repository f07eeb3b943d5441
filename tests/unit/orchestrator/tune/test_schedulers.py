"""Synchronous successive halving and the shuffled grid: decisions replayed on real Ray Trial objects.

The controller here is a plain loop standing in for Tune's: it runs the trial
the scheduler chooses one generation at a time and applies the scheduler's
answers (CONTINUE, PAUSE, STOP). The curves are the per-generation balanced
accuracies the grid sweep of benchmarks/tune_efficiency.py recorded.
"""

from __future__ import annotations

import logging
import random

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.config import TuneSettings
from orchestrator.tune.schedulers import SuccessiveHalving, make_scheduler, rung_milestones
from orchestrator.tune.space import shuffled_grid

METRIC = "evaluate/balanced_accuracy"
CURVES = [  # grid order: lr 0.01 x4, 0.03 x4, 0.1 x4
    [0.340, 0.293, 0.290, 0.280, 0.290],
    [0.315, 0.288, 0.288, 0.290, 0.288],
    [0.308, 0.290, 0.288, 0.290, 0.288],
    [0.280, 0.275, 0.285, 0.268, 0.285],
    [0.420, 0.428, 0.448, 0.445, 0.455],
    [0.403, 0.408, 0.428, 0.438, 0.413],
    [0.435, 0.453, 0.425, 0.443, 0.463],
    [0.428, 0.423, 0.420, 0.440, 0.443],
    [0.670, 0.543, 0.518, 0.493, 0.510],
    [0.625, 0.575, 0.560, 0.563, 0.565],
    [0.630, 0.613, 0.545, 0.565, 0.565],
    [0.628, 0.568, 0.513, 0.533, 0.513],
]


class Controller:
    """Runs trials one generation per step as Tune would, with at most ``concurrency`` running."""

    def __init__(self, scheduler: SuccessiveHalving, curves: list[list[float]], order: list[int]) -> None:
        self.scheduler, self.curves = scheduler, curves
        self.trials = [Trial("relay_trial", stub=True, trial_id=f"t{i:02d}") for i in order]
        self.index = dict(zip(self.trials, order))
        self.generations = dict.fromkeys(self.trials, 0)
        self.freed: list[str] = []
        self.fail_once: set[Trial] = set()  # fail at their next generation, then Tune retries them
        for trial in self.trials:
            scheduler.on_trial_add(self, trial)

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        trial.set_status(Trial.TERMINATED)
        self.scheduler.on_trial_remove(self, trial)

    def run(self, max_t: int) -> None:
        while (trial := self.scheduler.choose_trial_to_run(self)) is not None:
            trial.set_status(Trial.RUNNING)
            while trial.status == Trial.RUNNING:
                if trial in self.fail_once:
                    self.retry(trial)
                    break
                self.generations[trial] += 1
                result = {
                    "training_iteration": self.generations[trial],
                    METRIC: self.curves[self.index[trial]][self.generations[trial] - 1],
                }
                action = self.scheduler.on_trial_result(self, trial, result)
                if action == TrialScheduler.PAUSE:
                    trial.set_status(Trial.PAUSED)
                elif action == TrialScheduler.STOP or self.generations[trial] == max_t:
                    trial.set_status(Trial.TERMINATED)
                    self.scheduler.on_trial_complete(self, trial, result)

    def retry(self, trial: Trial) -> None:
        """What Tune's _requeue_trial does for a failed trial with retries left: error, then add it back."""
        self.fail_once.discard(trial)
        self.scheduler.on_trial_error(self, trial)
        trial.set_status(Trial.PENDING)
        self.trials.remove(trial)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def spent(self) -> int:
        return sum(self.generations.values())

    def finished_all(self, max_t: int) -> list[int]:
        return sorted(self.index[t] for t in self.trials if self.generations[t] == max_t)


def halving(trials: int, mode: str = "max") -> SuccessiveHalving:
    scheduler = SuccessiveHalving(grace_period=1, reduction_factor=4, max_t=5, trials=trials, concurrency=1)
    scheduler.set_search_properties(METRIC, mode)
    return scheduler


@pytest.mark.parametrize(
    ("grace", "rf", "max_t", "expected"),
    [(1, 4, 5, [1, 4]), (1, 2, 5, [1, 2, 4]), (2, 3, 20, [2, 6, 18]), (5, 4, 5, [])],
)
def test_rungs_start_at_grace_and_grow_by_the_reduction_factor(
    grace: int, rf: float, max_t: int, expected: list[int]
) -> None:
    assert rung_milestones(grace, rf, max_t) == expected


def test_every_order_spends_the_textbook_budget_and_keeps_the_best() -> None:
    outcomes = set()
    for seed in range(20):
        order = list(range(12))
        random.Random(seed).shuffle(order)
        controller = Controller(halving(12), CURVES, order)
        controller.run(max_t=5)
        outcomes.add((controller.spent(), tuple(controller.finished_all(5))))
    # 12 trials x 1 generation, the best 3 of generation 1 run to 4, the best 1 of those to 5
    assert outcomes == {(12 + 3 * 3 + 1, (10,))}


def test_no_trial_passes_a_rung_before_every_trial_reached_it() -> None:
    controller = Controller(halving(12), CURVES, list(range(12)))
    scheduler = controller.scheduler
    seen: list[tuple[str, int]] = []
    original = scheduler.on_trial_result

    def record(tc, trial, result):
        seen.append((trial.trial_id, result["training_iteration"]))
        return original(tc, trial, result)

    scheduler.on_trial_result = record  # type: ignore[method-assign]
    controller.run(max_t=5)
    first_past_rung = next(i for i, (_, t) in enumerate(seen) if t == 2)
    assert sum(t == 1 for _, t in seen[:first_past_rung]) == 12


def test_min_mode_keeps_the_lowest() -> None:
    controller = Controller(halving(12, mode="min"), CURVES, list(range(12)))
    controller.run(max_t=5)
    assert controller.finished_all(5) == [3]  # the lowest generation-1 values are the lr 0.01 trials; 3 ends lowest


def test_a_trial_that_fails_before_the_rung_does_not_hold_it_up() -> None:
    scheduler = halving(3)
    controller = Controller(scheduler, CURVES[8:11], [0, 1, 2])
    broken = controller.trials[2]
    broken.set_status(Trial.ERROR)
    scheduler.on_trial_error(controller, broken)
    controller.run(max_t=5)
    assert controller.generations[broken] == 0
    assert controller.finished_all(5) == [0]  # the best of the two that reported (0.670 vs 0.625)


@pytest.mark.parametrize("failing", range(4))
def test_a_trial_retried_before_the_rung_is_waited_for(failing: int) -> None:
    """Tune retries a failed trial with on_trial_error then on_trial_add: the rung still halves all four.

    The integration test's sweep: 4 trials, reduction factor 2, 2 generations; two learn.
    Whichever trial fails once before reporting, the best 2 go on and the other 2 stop.
    """
    scheduler = SuccessiveHalving(grace_period=1, reduction_factor=2, max_t=2, trials=4, concurrency=1)
    scheduler.set_search_properties(METRIC, "max")
    curves = [[0.125, 0.1], [0.27, 0.25], [0.125, 0.1], [0.255, 0.2]]
    controller = Controller(scheduler, curves, [0, 1, 2, 3])
    controller.fail_once.add(controller.trials[failing])
    controller.run(max_t=2)
    assert controller.finished_all(2) == [1, 3]
    assert sorted(controller.generations.values()) == [1, 1, 2, 2]


def test_a_kept_trial_retried_before_the_next_rung_is_compared_there() -> None:
    """Trial 0 passes rung 1 (0.670), fails once on its way to rung 2, and is ranked there after its retry."""
    scheduler = SuccessiveHalving(grace_period=1, reduction_factor=2, max_t=3, trials=4, concurrency=1)
    scheduler.set_search_properties(METRIC, "max")
    controller = Controller(scheduler, [c[:3] for c in CURVES[8:12]], [0, 1, 2, 3])
    original = scheduler.on_trial_result

    def fail_the_best_once(tc, trial, result):
        action = original(tc, trial, result)
        if controller.index[trial] == 0 and result["training_iteration"] == 1 and action != TrialScheduler.STOP:
            controller.fail_once.add(trial)  # fails during its next generation, after the rung kept it
        return action

    scheduler.on_trial_result = fail_the_best_once  # type: ignore[method-assign]
    controller.run(max_t=3)
    first = controller.trials[[controller.index[t] for t in controller.trials].index(0)]
    assert controller.generations[first] == 2  # reached rung 2 after its retry, and lost there to 0.613
    assert controller.finished_all(3) == [2]
    assert controller.spent() == 4 + 2 + 1


def test_paused_trials_free_their_search_slot() -> None:
    freed: list[str] = []
    scheduler = SuccessiveHalving(1, 4, 5, trials=4, concurrency=1, release_slot=freed.append)
    scheduler.set_search_properties(METRIC, "max")
    controller = Controller(scheduler, CURVES[:4], [0, 1, 2, 3])
    controller.run(max_t=5)
    assert freed == ["t00", "t01", "t02"]  # the fourth completes the rung instead of pausing


def test_a_paused_trial_stopped_at_its_rung_has_its_last_result_marked_done() -> None:
    """A trial stopped while paused never reports again; the mark is what the trials table reads as stopped early
    (a trial without it was cut off by a Ctrl-C: interrupted)."""
    scheduler = halving(trials=4)
    controller = Controller(scheduler, CURVES[:4], [0, 1, 2, 3])  # generation 0: 0.340, 0.315, 0.308, 0.280
    controller.run(max_t=5)
    paused_losers = {"t01", "t02"}  # t03 completes the rung and is stopped on its own result, as ASHA stops one
    assert {t.trial_id for t in controller.trials if t.last_result.get("done")} == paused_losers
    assert all(t.status == Trial.TERMINATED for t in controller.trials if t.trial_id in paused_losers)


def test_make_scheduler_builds_sha_from_the_tune_section() -> None:
    settings = TuneSettings(
        metric=METRIC, scheduler="sha", grace_period=1, reduction_factor=4, space={"train.lr": {"grid": [0.1, 0.2]}}
    )
    scheduler = make_scheduler(settings, generations=5, trials=2, concurrency=1)
    assert isinstance(scheduler, SuccessiveHalving) and "successive halving" in scheduler.debug_string()


def test_grid_points_come_shuffled_by_seed_and_complete() -> None:
    settings = TuneSettings(
        metric=METRIC,
        num_samples=2,
        space={
            "train.lr": {"grid": [0.01, 0.03, 0.1]},
            "augment.strong.num_ops": {"grid": [1, 3]},
            "crest.t_min": {"uniform": [0.3, 0.9]},
        },
    )
    points = shuffled_grid(settings, seed=0)
    ordered = [{"train.lr": lr, "augment.strong.num_ops": n} for lr in (0.01, 0.03, 0.1) for n in (1, 3)]
    assert sorted(map(str, points)) == sorted(map(str, ordered * 2))
    assert points != ordered * 2 and points == shuffled_grid(settings, seed=0) != shuffled_grid(settings, seed=1)
    assert shuffled_grid(settings.model_copy(update={"space": {"crest.t_min": settings.space["crest.t_min"]}}), 0) == []


def test_a_sweep_at_info_shows_the_decisions_and_not_the_bookkeeping(caplog: pytest.LogCaptureFixture) -> None:
    """Before: each trial's end printed `trial t03 ended (RUNNING); expected at generation(s) []` at INFO."""
    controller = Controller(halving(12), CURVES, list(range(12)))
    with caplog.at_level(logging.INFO, logger="orchestrator.tune.schedulers"):
        controller.run(max_t=5)
    said = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    assert not [line for line in said if "expected at generation" in line]
    assert any(line.startswith("successive halving at generation 1: 3 of 12") for line in said)
