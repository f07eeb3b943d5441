"""A run whose attempt failed before its stages (Ray did not start) is recorded FAILED, not left to read INTERRUPTED.

tests/integration/test_ray_start_under_a_memory_cap.py fails a real `relay run`; this covers a resume's attempt, whose
claim had written RUNNING over the earlier attempt's ledger, and what is not a failure (a Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.records.run_status import run_status
from orchestrator.engine import ledger
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import RelayError

EARLIER = {"g00/train": {"state": "succeeded", "fingerprint": "abc", "generation": 0}}


def resumed_run(tmp_path: Path) -> ArtifactStore:
    """A run an earlier attempt left FAILED after one stage, claimed by this process's resume (RUNNING)."""
    store = ArtifactStore(str(tmp_path / "artifacts"))
    earlier = {"run_id": "r1", "status": "FAILED", "started": "2026-01-01T00:00:00+00:00", "stages": EARLIER}
    ledger.write_ledger(store, "r1", earlier)
    ledger.claim_run(store, "r1")
    return store


def test_a_resume_whose_ray_did_not_start_is_failed_with_its_stages_kept(tmp_path: Path) -> None:
    store = resumed_run(tmp_path)
    with pytest.raises(RelayError), ledger.failed_start_recorded(store, "r1"):
        raise RelayError("could not start a local Ray instance: ...")
    recorded = ledger.read_ledger(store, "r1")
    assert recorded is not None
    assert recorded["status"] == "FAILED" and recorded["stages"] == EARLIER
    assert recorded["started"] == "2026-01-01T00:00:00+00:00"  # the run's first start, not this attempt's
    assert recorded["start_error"] == "could not start a local Ray instance: ..."
    assert run_status(store, "r1") == "FAILED"


def test_a_ctrl_c_while_ray_starts_is_no_failure(tmp_path: Path) -> None:
    store = resumed_run(tmp_path)
    with pytest.raises(KeyboardInterrupt), ledger.failed_start_recorded(store, "r1"):
        raise KeyboardInterrupt
    recorded = ledger.read_ledger(store, "r1")
    assert recorded is not None and recorded["status"] == "RUNNING" and "start_error" not in recorded
