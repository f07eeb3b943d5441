"""Relay's exceptions.

Every error names what went wrong, what was expected and what to do, so a
user can act on the message alone. Errors that may cross a process boundary
(a Ray worker raising ArtifactError, say) define ``__reduce__`` because their
constructors take more than one argument and plain exception pickling would
call them with the formatted message only; they pass their attributes along as the state, so what
is kept with an error (the traceback of the stage body that raised it, ``BODY_TRACEBACK``) crosses too.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence


class RelayError(Exception):
    """Base of every error Relay raises on purpose."""


class InputError(RelayError):
    """The user's input is wrong: a config, an argument, a path, a name that points at nothing.

    The CLI answers it with exit code 2 (a stage, the tracking store or the cluster failing is
    exit code 1), and every check that can raise it runs before the command writes anything.
    """


def problem_list(problems: Sequence[str], where: str) -> str:
    """``N problem(s) in WHERE:`` and one ``  - problem`` line each: how every collected error reads."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"{len(problems)} problem(s) in {where}:\n{lines}"


class ConfigError(InputError):
    """Every problem found in one configuration, raised once.

    Collecting all problems before raising spares the user a fix-one-rerun
    loop: each line reads ``<dotted.key>: <what>; <fix>``.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(problem_list(self.problems, source or "the configuration"))

    def __reduce__(self):
        return (type(self), (self.problems, self.source), dict(self.__dict__))


class PipelineError(InputError):
    """A pipeline's stage graph is invalid; lists every problem found.

    Accepts one message or a list, so callers outside the DAG check can raise
    it with a single sentence.
    """

    def __init__(self, problems: Sequence[str] | str, name: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.name = name
        super().__init__(problem_list(self.problems, f"pipeline {name!r}" if name else "the pipeline"))

    def __reduce__(self):
        return (type(self), (self.problems, self.name), dict(self.__dict__))


class StageError(RelayError):
    """A stage failed for good (no retry left, or a deterministic error).

    ``traceback_at``: where the run record keeps the failure's traceback (``runs/<run id>/errors/``), said
    at the end of the message, since the message itself has room for the exception's last line only.
    """

    def __init__(self, stage: str, cause: BaseException, attempts: int, traceback_at: str | None = None) -> None:
        self.stage = stage
        self.cause = cause
        self.attempts = attempts
        self.traceback_at = traceback_at
        where = f" (traceback: {traceback_at})" if traceback_at else ""
        super().__init__(f"stage {stage!r} failed after {attempts} attempt(s): {type(cause).__name__}: {cause}{where}")

    def __reduce__(self):
        return (type(self), (self.stage, self.cause, self.attempts, self.traceback_at), dict(self.__dict__))


class ArtifactError(RelayError):
    """Reading or writing one artifact failed; wraps the storage error once.

    ``retryable`` is False when retrying cannot help (the stage returned a
    value that cannot be stored), so the retry policy does not waste attempts.
    """

    def __init__(self, artifact: str, message: str, retryable: bool = True) -> None:
        self.artifact = artifact
        self.message = message
        self.retryable = retryable
        super().__init__(f"artifact {artifact!r}: {message}")

    def __reduce__(self):
        return (type(self), (self.artifact, self.message, self.retryable), dict(self.__dict__))


class SettingError(InputError):
    """A setting names something that is not what it should be (an address that answers but is
    not a Ray dashboard): bad input like a ConfigError (exit 2), for errors found by asking a server."""


class TrackingError(RelayError):
    """The tracking store failed while ``strict`` tracking was asked for."""


class WorkerLostError(RelayError):
    """The process, actor or node running a stage died under it (a killed node, an OOM kill).

    Says nothing about the stage itself, so the retry policy retries it even when the stage
    asked for no retries of its own (``policy.LOST_WORKER_RETRIES``).
    """

    def __init__(self, stage: str, cause: str) -> None:
        self.stage = stage
        self.cause = cause
        super().__init__(f"stage {stage!r} lost its worker: {cause}")

    def __reduce__(self):
        return (type(self), (self.stage, self.cause), dict(self.__dict__))


class UnreadableDataError(RelayError, ValueError):
    """A file of the data a run reads cannot be read (an image that does not decode), found by a stage.

    A class of its own because the usual way on after a failed stage, `relay resume`, cannot work
    here: fixing the file changes the data, and a resume refuses data that changed since the run
    started (its finished stages read the old data). The runner says to start a new run instead.
    A ValueError too, for the callers that already took the plain one. Pipelines' pure modules,
    which import nothing of the orchestrator, raise their own ValueError with ``unreadable_data``
    set True, which counts the same (``unreadable_data_in``).
    """

    unreadable_data = True


def unreadable_data_in(error: BaseException) -> BaseException | None:
    """The unreadable-data error in ``error`` or its chain (a StageError is raised from its cause); else None."""
    return next((e for e in exception_chain(error) if getattr(e, "unreadable_data", False) is True), None)


class ChangedWeightsError(RelayError, ValueError):
    """The `init.source` weights changed between the run's planning and the stage that imports them.

    A class of its own because the usual way on after a failed stage, "fix the cause and resume",
    says nothing of which weights: the run was planned with the old ones, so putting them back and
    resuming continues it, while the new ones need a new run. The runner says both ways
    (``changed_weights_in``). A ValueError: a deterministic failure, never retried.
    """

    changed_weights = True


def changed_weights_in(error: BaseException) -> BaseException | None:
    """The changed-weights error in ``error`` or its chain (a StageError is raised from its cause); else None."""
    return next((e for e in exception_chain(error) if getattr(e, "changed_weights", False) is True), None)


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and each exception behind it (``__cause__``, else ``__context__``), once each: what a
    wrapper (the runner's StageError, the Parquet writer) hides of what went wrong."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


BODY_TRACEBACK = "relay_body_traceback"  # the attribute a failed stage body's traceback text is kept in
REMOTE_TRACEBACK = "relay_remote_traceback"  # the one a Ray task's traceback is kept in, when the body's is not known


def body_traceback(error: BaseException) -> str | None:
    """The traceback of the stage body's own frames kept with ``error`` or its chain (``body.run_stage_body``
    keeps it where the body ran, a Ray worker included), else None: the failure did not come from the body."""
    kept = (getattr(e, BODY_TRACEBACK, None) for e in exception_chain(error))
    return next((text for text in kept if isinstance(text, str) and text), None)


def failure_traceback(error: BaseException) -> str | None:
    """The fullest traceback known of a failure: the stage body's, else Ray's of the remote task, else the
    driver's own (Relay's frames); None when the error carries none (made, never raised: a lost worker)."""
    if body := body_traceback(error):
        return body
    remote = getattr(error, REMOTE_TRACEBACK, None)
    if isinstance(remote, str) and remote:
        return remote
    if error.__traceback__ is not None:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return None
