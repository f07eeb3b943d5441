"""Ray Tune's console lines a Relay user cannot act on, kept off the console (or cut to one line) while a sweep fits.

Each names Ray Tune's own ways on (``Tuner.restore``, ``reuse_actors``), a missing result file
that Relay's trials table already explains, or a failed trial's traceback through Ray's own frames;
Relay prints its own way on instead. Apart from the sweep because each is a filter on one of Ray
Tune's loggers or warnings, with the line it drops.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

from orchestrator.engine.ray_start_log import filtered
from orchestrator.tune.trial_failures import failure_line

RAY_TUNE_LOGGER = "ray.tune.tune"  # the logger of Ray Tune's run loop (its module's name)
RESTORE_ADVICE = "Resume experiment with:"  # Ray Tune's warning after a Ctrl-C: "... Tuner.restore(path=...)"


class _WithoutRestoreAdvice(logging.Filter):
    """Drops Ray Tune's own way on after a Ctrl-C (a warning); its errors and other warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or RESTORE_ADVICE not in record.getMessage()


@contextlib.contextmanager
def no_restore_advice() -> Iterator[None]:
    """Keep Ray Tune's `Resume experiment with: Tuner.restore(path=..., trainable=...)` off the console while it fits.

    Why: on a Ctrl-C Ray Tune logs that line just before Relay prints `continue it with: relay tune
    ... --resume`, two conflicting ways on, and Tuner.restore is not one a Relay user can take. Ray
    Tune logs it unconditionally (no verbosity hides it), so a filter on its run loop's logger
    drops that one warning; its "Stop signal received ... Press CTRL+C to skip" line stays.
    """
    with filtered(_WithoutRestoreAdvice(), RAY_TUNE_LOGGER):
        yield


ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"  # the logger of Ray Tune's results reader
FETCH_FAILURE = "Failed to fetch metrics for"  # its warning for a trial with no result file yet


class _WithoutFetchFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        missing = message.startswith(FETCH_FAILURE) and all(
            "FileNotFoundError" in line for line in message.splitlines()[1:] if line.startswith("- ")
        )
        return record.levelno >= logging.ERROR or not missing


@contextlib.contextmanager
def no_fetch_failures() -> Iterator[None]:
    """Keep Ray Tune's `Failed to fetch metrics for 1 trial(s): FileNotFoundError(... both result.json and
    progress.csv were not found ...)` warning off the console while it fits.

    Why: a resumed sweep whose interrupt caught a trial before its first generation printed it, a
    traceback-like line about a trial that simply has no result yet; Relay's trials table shows that
    trial `unfinished`, and a trial that failed is named with its error file (``say_where_errors_are``).
    Only a warning all of whose trials lack their files is dropped: another failure (a result file that
    cannot be parsed or read) is a problem of the sweep's folder, and stays on the console.
    """
    with filtered(_WithoutFetchFailures(), ANALYSIS_LOGGER):
        yield


REUSE_ACTORS_ADVICE = "Consider boosting PBT performance by enabling `reuse_actors`"  # Ray Tune's UserWarning


@contextlib.contextmanager
def no_reuse_actors_advice() -> Iterator[None]:
    """Keep Ray Tune's `UserWarning: Consider boosting PBT performance by enabling reuse_actors ...` off the console.

    Why: Ray Tune warns so under every PBT sweep whose Tuner does not reuse actors, and the advice is
    about the Tuner's own settings and a Trainable's `reset_config`, none of which a Relay user can
    change (a trial's actor is a fresh pipeline driver by design).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(REUSE_ACTORS_ADVICE), category=UserWarning)
        yield


CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"  # the logger of Ray Tune's trial controller
TRIAL_TASK_FAILED = "Trial task failed for trial"  # its error for each failed attempt of a trial, traceback attached


class _OneLineTrialFailures(logging.Filter):
    """Cuts Ray Tune's `Trial task failed for trial X` error to one line: the trial's own error, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and record.getMessage().startswith(TRIAL_TASK_FAILED):
            record.msg, record.args = f"{record.getMessage()}: {failure_line(error)}", ()
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def one_line_trial_failures() -> Iterator[None]:
    """Print each failed attempt of a trial as one line naming its error, not as Ray's 50-line traceback.

    Why: Ray Tune logs every failed attempt with the traceback of its own ``ray.get`` and trainable
    frames around the trial's error, about 50 lines each, three times for a trial it retries twice;
    the error a user acts on (``loss is nan ... Lower the learning rate``) was one line lost among
    them. The whole traceback stays in the trial's error.txt, which Relay names when the sweep ends
    (``say_where_errors_are``), and a trial's own failure still prints its traceback from the trial.
    """
    with filtered(_OneLineTrialFailures(), CONTROLLER_LOGGER):
        yield
