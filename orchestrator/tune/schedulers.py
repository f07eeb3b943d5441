"""How `relay tune` stops, pauses and orders trials: Ray Tune schedulers counted in generations.

Why a synchronous successive-halving scheduler beside Ray's ASHA: ASHA decides
each time a trial reaches a rung, against the trials that reached it before.
When trials run a few at a time (a small cluster, or one whose stages fill it)
the first trials always meet an empty or small rung and get promoted, so a
12-point sweep spends 0.5 to 0.8 of the grid's compute whatever its ranking
(benchmarks/tune_efficiency.py, and a replay of its recorded metrics over
3000 orders). ``SuccessiveHalving`` pauses each trial at a rung until every
trial of the sweep has reached it, then keeps the best 1/reduction_factor: the
textbook budget, independent of order and concurrency. Paused trials give
their resources back and resume from their checkpoint (a trial's checkpoint is
its schedule; the artifact store holds the generations it already ran).

Ray's HyperBandScheduler pauses the same way but hedges across brackets (some
run every trial to the end); this is its most aggressive bracket alone, over
the whole sweep. It also keeps the sweep's concurrency while trials pause: the
variant generator counts a paused trial as running (it would never suggest the
next one), so the scheduler tells it a paused trial no longer holds a slot
(``on_trial_complete`` is the generator's public way to free one) and resumes
survivors only while fewer than ``concurrency`` trials run.

A rung is decided only once every trial expected at it has reported or ended for good. Tune
retries a failed trial (``FailureConfig``) by calling ``on_trial_error`` and then
``on_trial_add`` for it: the rung expects it again, and a rung that a removal completes is
decided in the next ``choose_trial_to_run``, never inside the removal, so a trial that is
being retried is not left out of it. Each decision is logged (which trial waits, goes on, is stopped);
the bookkeeping of a trial that ends is logged at DEBUG only.

After ``relay tune --resume`` the scheduler starts empty (Tune does not save it) and Tune hands it
the restored trials as PENDING, which Tune starts whatever the scheduler chooses. A restored trial
whose last result is a rung's is paused again in ``on_trial_add``, so it waits for that rung's
decision as it did before the interrupt, and a rung decided after the resume stops its losers
(before: they ran on, a 4-trial sweep halved at generation 1 ran all 4 to the end). A restored
trial past a rung had been kept there, so a rung decided again keeps it (its restored score is a
later generation's, not the rung's). A trial paused by Tune and not by the halving goes on when
there is room: Tune's state keeps a pause it was carrying out at a Ctrl-C and repeats it after the
resume, and that trial stayed paused for good (the sweep hung).

``ConcurrencyCap`` wraps whichever scheduler the sweep uses (sweep.py's ``tune_config``) so that
a resumed sweep runs no more than its ``concurrency`` trials at once. The search algorithm holds
only the trials it suggests to that limit; the failed and unfinished trials ``--resume`` restores
all come back PENDING, and Tune starts every PENDING trial (a sweep limited to 1 ran 4 at once).
A trial added while ``concurrency`` trials run or start is paused in ``on_trial_add`` instead, as
SuccessiveHalving pauses a restored trial at its rung, and ``choose_trial_to_run``, Tune's public
way to start a paused trial, starts one only while fewer run. Each of Relay's schedulers chooses a
paused trial it did not pause itself when nothing is PENDING (FIFO's and ASHA's first, PBT's least
trained, SuccessiveHalving's ``_may_go_on``), so the cap only vetoes the choices over the limit. A
new sweep is never over it (its search suggests no more), so there the cap changes nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.result import DONE
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.config import SearchDomain, TuneSettings
from orchestrator.tune.space import clip_values, param_space

logger = logging.getLogger(__name__)

TIME_ATTR = "training_iteration"  # one report per generation: time is counted in generations


def rung_milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Generations at which successive halving compares trials: grace, grace*rf, ... below max_t."""
    milestones, t = [], float(grace_period)
    while t < max_t:
        milestones.append(int(t))
        t *= reduction_factor
    return sorted(set(milestones))


class SuccessiveHalving(FIFOScheduler):
    """Synchronous successive halving over every trial of the sweep (see the module docstring)."""

    def __init__(
        self,
        grace_period: int,
        reduction_factor: float,
        max_t: int,
        trials: int,
        concurrency: int,
        release_slot: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self._reduction_factor = reduction_factor
        self._expected = dict.fromkeys(self._milestones, 0)
        if self._milestones:
            self._expected[self._milestones[0]] = trials
        self._scores: dict[int, dict[Trial, float]] = {m: {} for m in self._milestones}
        self._survivors: dict[int, set[Trial]] = {}
        self._paused: set[Trial] = set()
        self._left: dict[Trial, int] = {}  # removed trial -> the rung that stopped expecting it
        self._added: set[Trial] = set()  # added again: a retry; added first with a result or ended: restored
        self._restored_at: dict[Trial, int] = {}  # restored trial -> the generation it had reached
        self._concurrency = concurrency
        self._release_slot = release_slot or (lambda trial_id: None)
        self._mode: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    # --- Tune's callbacks ---------------------------------------------------------------------

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """A retried trial is expected at its rung again; a restored one (``--resume``) keeps the rungs it passed.

        A restored trial counts as having reached the rungs it passed, with its last value; a
        score a rung already holds is never replaced. A restored trial stopped at a rung not yet
        decided waits there again (see the module docstring).
        """
        first_seen = trial not in self._added
        self._added.add(trial)
        if trial in self._left:
            self._expected[self._left.pop(trial)] += 1
        reached = (trial.last_result or {}).get(TIME_ATTR, 0)
        for milestone in self._milestones:
            if reached >= milestone and self._metric in (trial.last_result or {}):
                self._scores[milestone].setdefault(trial, self._signed(trial.last_result[self._metric]))
        if first_seen and (reached or trial.is_finished()):  # a new trial has neither: only a restored one
            self._restore(tune_controller, trial, reached)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        milestone = result.get(TIME_ATTR)
        if milestone not in self._scores or trial in self._scores[milestone]:
            return TrialScheduler.CONTINUE
        self._scores[milestone][trial] = self._signed(result[self._metric])
        if not self._rung_complete(milestone):
            logger.info(
                "trial %s waits at generation %d (%d of %d in)",
                trial.trial_id,
                milestone,
                len(self._scores[milestone]),
                self._expected[milestone],
            )
            self._paused.add(trial)
            self._release_slot(trial.trial_id)
            return TrialScheduler.PAUSE
        return self._halve(tune_controller, milestone, current=trial)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """A trial that ends before its next rung no longer holds that rung up (decided in choose_trial_to_run)."""
        self._paused.discard(trial)
        pending = [m for m in self._milestones if trial not in self._scores[m] and self._expects(m, trial)]
        if pending:
            self._expected[pending[0]] -= 1
            self._left[trial] = pending[0]
        # Bookkeeping, not a decision: the halving's and the waits' INFO lines say what the user sees happen.
        logger.debug("trial %s ended (%s); expected at generation(s) %s", trial.trial_id, trial.status, pending)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """New trials first; a paused survivor only while fewer than ``concurrency`` trials run.

        First, a rung that removals completed is decided (see the module docstring).
        """
        for milestone in self._milestones:
            if milestone not in self._survivors and self._scores[milestone] and self._rung_complete(milestone):
                self._halve(tune_controller, milestone, current=None)
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        running = sum(t.status == Trial.RUNNING for t in trials)
        if running >= self._concurrency:
            return None
        chosen = next((t for t in trials if t.status == Trial.PAUSED and self._may_go_on(t)), None)
        if chosen is not None:
            logger.info("trial %s goes on", chosen.trial_id)
        self._paused.discard(chosen)
        return chosen

    def debug_string(self) -> str:
        rungs = ", ".join(f"gen {m}: {len(self._scores[m])}/{self._expected[m]}" for m in self._milestones)
        return f"Synchronous successive halving (reduction factor {self._reduction_factor}): {rungs}"

    # --- the halving --------------------------------------------------------------------------

    def _signed(self, value: float) -> float:
        return -float(value) if self._mode == "min" else float(value)

    def _expects(self, milestone: int, trial: Trial) -> bool:
        """Whether ``trial`` is one of the trials the rung waits for."""
        index = self._milestones.index(milestone)
        return index == 0 or trial in self._survivors.get(self._milestones[index - 1], set())

    def _rung_complete(self, milestone: int) -> bool:
        return len(self._scores[milestone]) >= self._expected[milestone]

    def _promoted(self, trial: Trial) -> bool:
        """Paused here, and kept by the halving of the last rung it reached."""
        reached = [m for m in self._milestones if trial in self._scores[m]]
        return trial in self._paused and bool(reached) and trial in self._survivors.get(reached[-1], set())

    def _may_go_on(self, trial: Trial) -> bool:
        """Kept by its rung, or paused by Tune rather than by the halving.

        Tune saves a pause it is carrying out in the sweep's state: a Ctrl-C just after a trial
        was told to wait, then ``--resume``, and Tune pauses that trial again on its first
        checkpoint, whatever the scheduler answered; nothing resumed it and the sweep hung.
        """
        return trial not in self._paused or self._promoted(trial)

    def _restore(self, tune_controller: Any, trial: Trial, reached: int) -> None:
        """Pause a restored trial again at the rung it stopped at, while that rung is not decided.

        Tune adds a restored trial as PENDING and starts every PENDING trial: the status is set
        here, before Tune files the trial under it (``add_trial`` reads it after this hook), so
        Tune keeps it paused until ``choose_trial_to_run`` promotes it or ``_halve`` stops it. A
        restored trial that had ended no longer holds up the rung it did not reach.
        """
        self._restored_at[trial] = reached
        if trial.is_finished():
            self.on_trial_remove(tune_controller, trial)
            return
        if reached not in self._scores or trial not in self._scores[reached] or reached in self._survivors:
            return
        trial.set_status(Trial.PAUSED)
        self._paused.add(trial)
        self._release_slot(trial.trial_id)
        logger.info("trial %s waits at generation %d again (restored by --resume)", trial.trial_id, reached)

    def _passed(self, trial: Trial, milestone: int) -> bool:
        """A restored trial beyond this rung: the rung kept it before the interrupt."""
        return self._restored_at.get(trial, 0) > milestone

    def _halve(self, tune_controller: Any, milestone: int, current: Trial | None) -> str:
        """Keep the best ceil(n / reduction_factor) of the rung; stop the rest, let the kept ones go on.

        Restored trials that had passed the rung rank first: their score is a later generation's.
        """
        scores = self._scores[milestone]
        keep = max(1, math.ceil(len(scores) / self._reduction_factor))
        ranked = sorted(scores, key=lambda t: (self._passed(t, milestone), scores[t]), reverse=True)
        kept = set(ranked[:keep])
        self._survivors[milestone] = kept
        index = self._milestones.index(milestone)
        if index + 1 < len(self._milestones):
            following = self._milestones[index + 1]
            self._expected[following] = sum(t in self._scores[following] or not t.is_finished() for t in kept)
        logger.info(
            "successive halving at generation %d: %d of %d trial(s) go on (%s)",
            milestone,
            len(kept),
            len(scores),
            ", ".join(t.trial_id for t in ranked[:keep]),
        )
        for trial in ranked[keep:]:
            if trial is not current and trial in self._paused:
                self._paused.discard(trial)
                _mark_done(trial)
                tune_controller.stop_trial(trial)
        if current is None:
            return TrialScheduler.NOOP
        self._paused.discard(current)
        return TrialScheduler.CONTINUE if current in kept else TrialScheduler.STOP


class ConcurrencyCap(TrialScheduler):
    """Any of Relay's schedulers, kept to ``concurrency`` trials at once after a resume (see the module docstring).

    A wrapper and not a base class: Ray's ASHA and PBT are Ray's own classes, and the cap is the
    same for all of them.
    """

    def __init__(self, scheduler: TrialScheduler, concurrency: int) -> None:
        super().__init__()
        self._scheduler = scheduler
        self._concurrency = concurrency
        self._seen: set[Trial] = set()

    @property
    def metric(self) -> str | None:
        return self._scheduler.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self._scheduler.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self._scheduler.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Pause a trial added while ``concurrency`` trials run or start: those ``--resume`` restores, after the first.

        Only a trial's first add: Tune adds a retried trial again after filing it PENDING itself,
        and it held a slot already. The status set here is the one Tune files the trial under
        (``add_trial`` reads it after this hook: Ray 2.60's order, which pyproject pins), as in
        ``SuccessiveHalving._restore``.
        """
        first_seen = trial not in self._seen
        self._seen.add(trial)
        self._scheduler.on_trial_add(tune_controller, trial)
        if first_seen and trial.status == Trial.PENDING and _taken(tune_controller, trial) >= self._concurrency:
            trial.set_status(Trial.PAUSED)
            logger.info("trial %s waits until fewer than %d trial(s) run", trial.trial_id, self._concurrency)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self._scheduler.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The wrapped scheduler's choice; a paused one only while fewer than ``concurrency`` trials run or start."""
        chosen = self._scheduler.choose_trial_to_run(tune_controller)
        if chosen is None or chosen.status == Trial.PENDING or _taken(tune_controller) < self._concurrency:
            return chosen
        return None

    def debug_string(self) -> str:
        return self._scheduler.debug_string()


def _taken(tune_controller: Any, but: Trial | None = None) -> int:
    """Trials that hold a slot: running, or PENDING, which Tune starts whatever the scheduler chooses."""
    return sum(t.status in (Trial.RUNNING, Trial.PENDING) and t is not but for t in tune_controller.get_trials())


def _mark_done(trial: Trial) -> None:
    """Mark a paused trial's last result done, as Tune marks the result it stops a running trial on.

    A trial stopped while paused never reports again; the mark is what tells the trials table
    (trial_rows._status) that its scheduler stopped it, and not a Ctrl-C that cut it off.
    """
    trial.last_result[DONE] = True


def make_scheduler(
    settings: TuneSettings,
    generations: int,
    trials: int,
    concurrency: int,
    release_slot: Callable[[str], None] | None = None,
) -> Any:
    """ASHA, synchronous successive halving, PBT, PB2 or FIFO; all count time in generations (one report each)."""
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    space = settings.space
    if settings.scheduler == "asha":
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=generations,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
    if settings.scheduler == "sha":
        return SuccessiveHalving(
            settings.grace_period, settings.reduction_factor, generations, trials, concurrency, release_slot
        )
    if settings.scheduler == "pbt":
        mutations = {
            k: (list(d.args) if d.kind in ("choice", "grid") else param_space({k: d})[k]) for k, d in space.items()
        }
        return PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=settings.perturbation_interval,
            hyperparam_mutations=mutations,
            custom_explore_fn=lambda c: _clip_in_place(c, space),
        )
    if settings.scheduler == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        return PB2(
            time_attr=TIME_ATTR,
            perturbation_interval=settings.perturbation_interval,
            hyperparam_bounds={k: list(d.args) for k, d in space.items()},
            custom_explore_fn=lambda c: _clip_in_place(c, space),
        )
    return FIFOScheduler()


def _clip_in_place(config: dict[str, Any], space: Mapping[str, SearchDomain]) -> dict[str, Any]:
    config.update(clip_values(config, space))
    return config
