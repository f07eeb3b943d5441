"""Ray's notices about its own internals are left out of the worker lines the `relay` command prints.

Every data-parallel stage printed Ray's C++ ERROR line on Ray Train's PreemptionWatcher actor and one line a rank
of Ray Train's report object. Relay sets Ray's switch for it, RAY_DEDUP_LOGS_SKIP_REGEX, before Ray is imported;
these tests feed the lines Ray printed (copied from a `relay run`) through Ray's own log deduplicator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ray._private.ray_logging import LogDeduplicator

from orchestrator.cli import RAY_NOTICES, configure_logging

ROOT = Path(__file__).resolve().parents[4]
SKIP_ENV = "RAY_DEDUP_LOGS_SKIP_REGEX"

PRINTED = [  # what two data-parallel stages printed, in this order
    "[2026-12-07 14:06:15,371 E 4987 5020] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: "
    "'553c169ef764ffbaf32a5ced01000000' has constructor arguments in the object store and max_restarts > 0. If the "
    "arguments in the object store go out of scope or are lost, the actor restart will fail. See "
    "https://github.com/ray-project/ray/issues/53727 for more details.",
    "Reporting training result 1: TrainingReport(checkpoint=Checkpoint(filesystem=local, path=/ws/artifacts/"
    "ray_train/c753527cc065d69d-g00_train/checkpoint_2026-12-07_14-06-21.547712), metrics={'step': 50}, "
    "validation=False) from rank 0",
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'step': 50}, validation=False) from rank 1",
]
KEPT = [  # a stage's own lines, a user's print, a failure's traceback
    "14:09:10 INFO orchestrator.engine.progress: g00/train:   2% 1/60 [00:00<?, ?steps/s]",
    "loss at step 3: 0.71",
    "Traceback (most recent call last):",
    "ValueError: Reporting training result failed",
    "[2026-12-07 14:06:15,371 E 4987 5020] core_worker.cc:1234: Actor with class name: 'MyActor' died",
]


def printed_of(lines: list[str]) -> list[str]:
    deduplicator = LogDeduplicator(5, None, RAY_NOTICES)
    batches = deduplicator.deduplicate({"ip": "10.0.0.1", "pid": 1, "lines": lines}) + deduplicator.flush()
    return [line for batch in batches for line in batch["lines"]]


def test_rays_notices_are_dropped_and_every_other_line_is_printed() -> None:
    assert printed_of(PRINTED) == []
    assert printed_of(KEPT) == KEPT


def test_the_command_sets_rays_switch_unless_the_user_did(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SKIP_ENV, raising=False)
    configure_logging(False)
    assert os.environ[SKIP_ENV] == RAY_NOTICES
    monkeypatch.setenv(SKIP_ENV, "mine")
    configure_logging(False)
    assert os.environ[SKIP_ENV] == "mine"


def test_ray_reads_it_after_the_command_set_it() -> None:
    """Ray reads the variable once, when imported: the `relay` command must not import Ray before it sets it."""
    script = textwrap.dedent(
        """
        import sys
        import orchestrator.cli as cli
        assert "ray" not in sys.modules, "importing the command imported Ray"
        cli.configure_logging(False)
        from ray._private import ray_logging
        print(ray_logging.stderr_deduplicator.skip_re.pattern == cli.RAY_NOTICES)
        """
    )
    env = {key: value for key, value in os.environ.items() if key != SKIP_ENV}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
