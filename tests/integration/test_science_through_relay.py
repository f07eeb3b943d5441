"""benchmarks/science.py --through-relay: a seed run as a real `relay run` gives the in-process runner's numbers.

The science protocol's seeds must be able to run as Relay runs on a cluster, with the same numbers
as the in-process runner. Here one CReST+ seed (2 short generations) runs both ways on this
machine: in a fresh process through the stage functions, and as `relay run` (a local Ray, the
artifact store, MLflow) read back from its run record.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
science = importlib.import_module("science")

pytestmark = pytest.mark.integration

TINY = [
    "data.imbalance_ratio=10",
    "data.labeled_fraction=0.1",
    "data.holdout_per_class=44",
    "data.image_size=8",
    "train.steps=6",
    "train.report_every=3",
    "crest.generations=2",
    "crest.alignment=true",
]


def test_a_seed_through_relay_equals_the_in_process_run_and_stays_in_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.delenv("RELAY_ARTIFACT_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = ("CReST+", 1, TINY, "cpu", "per-seed")
    (in_process,) = science._common.run_jobs(science.run_one, [job], workers=2)  # a fresh process, as the runner
    through_relay = science.run_through_relay(job)
    assert len(in_process["balanced_accuracy"]) == 2 and len(in_process["pick_accuracy"]) == 1
    for key in ("balanced_accuracy", "tail_recall", "pick_accuracy"):
        assert through_relay[key] == in_process[key], key
    from orchestrator.engine.artifacts import ArtifactStore
    from orchestrator.engine.ledger import read_ledger

    ledger = read_ledger(ArtifactStore(str(tmp_path / "workspace" / "artifacts")), through_relay["run_id"])
    assert ledger["status"] == "FINISHED"
    assert {"g00/evaluate", "g01/evaluate", "g00/rebalance"} <= set(ledger["stages"]), sorted(ledger["stages"])
    assert (tmp_path / "workspace" / "mlflow.db").exists()


def test_a_failed_relay_run_says_which_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "workspace"))
    bad_steps = [item for item in TINY if not item.startswith("train.steps=")] + ["train.steps=-1"]
    job = ("CReST+", 0, bad_steps, "cpu", "per-seed")
    with pytest.raises(RuntimeError, match="relay run science-crestplus-s0-.* exited 2"):
        science.run_through_relay(job)
