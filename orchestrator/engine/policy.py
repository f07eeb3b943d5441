"""Whether a failed stage attempt is retried: a pure function of the error and the attempts made.

Kept apart from the runner (no I/O, no state) so the retry policy is tested case by case
without a pipeline, a store or a cluster.
"""

from __future__ import annotations

from enum import Enum

from orchestrator.errors import ArtifactError, ConfigError, PipelineError, WorkerLostError

# Errors that recur on every attempt: bad values, bad types, bugs. Retrying wastes a slot.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    FloatingPointError,
    ConfigError,
    PipelineError,
)


# A lost node or worker says nothing about the stage: retry it this often even when the stage
# itself asks for no retries (its own ``retries`` still counts when it is larger).
LOST_WORKER_RETRIES = 2


class Decision(Enum):
    """What to do with a failed stage attempt."""

    RETRY = "retry"
    RAISE = "raise"


def decide(error: BaseException, attempt: int, max_retries: int) -> Decision:
    """Retry transient failures while attempts remain; never retry deterministic ones.

    ``attempt`` counts attempts made so far (1 after the first failure), so a
    stage with ``max_retries=2`` runs at most three times.
    """
    if not isinstance(error, Exception) or isinstance(error, DETERMINISTIC_ERRORS):
        return Decision.RAISE
    if isinstance(error, ArtifactError) and not error.retryable:
        return Decision.RAISE
    return Decision.RETRY if attempt <= retries_for(error, max_retries) else Decision.RAISE


def retries_for(error: BaseException, max_retries: int) -> int:
    """The retries a stage gets for ``error``: its own, and at least LOST_WORKER_RETRIES for a lost worker."""
    return max(max_retries, LOST_WORKER_RETRIES) if isinstance(error, WorkerLostError) else max_retries
