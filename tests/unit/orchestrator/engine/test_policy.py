"""The retry policy, case by case: transient failures are retried while attempts remain, deterministic ones never."""

import pytest

from orchestrator.engine.policy import Decision, decide
from orchestrator.errors import ArtifactError, ConfigError, WorkerLostError


@pytest.mark.parametrize(
    "error, attempt, retries, expected",
    [
        (RuntimeError("x"), 1, 2, Decision.RETRY),
        (RuntimeError("x"), 2, 2, Decision.RETRY),
        (RuntimeError("x"), 3, 2, Decision.RAISE),
        (RuntimeError("x"), 1, 0, Decision.RAISE),
        (OSError("network"), 1, 1, Decision.RETRY),
        (ArtifactError("m", "read failed"), 1, 1, Decision.RETRY),
        (ArtifactError("m", "unsupported type", retryable=False), 1, 5, Decision.RAISE),
        (ValueError("x"), 1, 5, Decision.RAISE),
        (TypeError("x"), 1, 5, Decision.RAISE),
        (KeyError("x"), 1, 5, Decision.RAISE),
        (FloatingPointError("nan"), 1, 5, Decision.RAISE),
        (ConfigError(["a: b"]), 1, 5, Decision.RAISE),
        (KeyboardInterrupt(), 1, 5, Decision.RAISE),
        (WorkerLostError("g00/train", "node died"), 1, 0, Decision.RETRY),  # a lost node says nothing about the stage
        (WorkerLostError("g00/train", "node died"), 2, 0, Decision.RETRY),
        (WorkerLostError("g00/train", "node died"), 3, 0, Decision.RAISE),
        (WorkerLostError("g00/train", "node died"), 3, 5, Decision.RETRY),
    ],
)
def test_decide(error, attempt, retries, expected):
    assert decide(error, attempt, retries) is expected
