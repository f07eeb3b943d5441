"""`relay delete SWEEP`'s reading of a sweep's name: one sweep per name, and a plan line that says what is there."""

from __future__ import annotations

import argparse

import pytest

from orchestrator.cli.records.mlflow_runs import TrackedRuns
from orchestrator.cli.records.sweep_deletion import SweepParts, sweep_parts
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import ConfigError


def test_a_name_two_sweeps_share_is_refused_naming_both(tmp_path) -> None:
    """A sweep in the workspace and another of the same name written with --output elsewhere were deleted together."""
    workspace, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    (workspace / "tune" / "s1").mkdir(parents=True)
    (workspace / "tune" / "s1" / "sweep-config.yaml").write_text("pipeline: crest\n")
    elsewhere.mkdir()
    store = ArtifactStore(str(workspace / "artifacts"))
    args = argparse.Namespace(workspace=str(workspace))
    with pytest.raises(ConfigError) as refused:
        sweep_parts(args, store, "s1", {"s1-a_00000": str(elsewhere)})
    message = str(refused.value)
    assert "'s1' names 2 sweeps" in message and str(elsewhere) in message and str(workspace / "tune" / "s1") in message
    assert "s1-TRIAL" in message


def test_a_sweep_without_its_folder_here_says_so_plainly(tmp_path) -> None:
    tracked = TrackedRuns("sqlite:///x.db", [("id", "s1")], [])
    gone = SweepParts("s1", ["s1-a_00000"], [], tracked).line()
    assert "no folder of it on this machine" in gone and "Ray Tune" not in gone
    here = SweepParts("s1", ["s1-a_00000"], [tmp_path], tracked).line()
    assert f"its folder {tmp_path}/ (Ray Tune's state, the sweep's tables and best config; 0 B)" in here


def test_the_plan_line_counts_the_sweeps_folder_among_the_bytes_freed(tmp_path) -> None:
    """The sweep's folder (Ray Tune's state, the tables) was removed but left out of the bytes `relay delete` freed."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "state.json").write_bytes(b"x" * 3000)
    (tmp_path / "trials.csv").write_bytes(b"y" * 1096)
    parts = SweepParts("s1", [], [tmp_path], TrackedRuns("sqlite:///x.db", [], []))
    assert parts.size == 4096
    assert "best config; 4.0 KiB)" in parts.line()


def test_a_sweep_interrupted_before_its_first_trial_is_found_by_its_empty_folder(tmp_path) -> None:
    """Its start removed the sweep's config and left tune/NAME empty (its MLflow run KILLED): `relay delete NAME`
    said there was no run or sweep of that name."""
    workspace = tmp_path / "ws"
    (workspace / "tune" / "cut").mkdir(parents=True)
    (workspace / "tune" / "other").mkdir(parents=True)
    (workspace / "tune" / "other" / "notes.txt").write_text("not a sweep's\n")
    args = argparse.Namespace(workspace=str(workspace))
    store = ArtifactStore(str(workspace / "artifacts"))
    parts = sweep_parts(args, store, "cut", {})
    assert parts is not None and parts.folders == [workspace / "tune" / "cut"] and parts.trials == []
    assert sweep_parts(args, store, "other", {}) is None, "a folder holding something else is not a sweep's"
    assert sweep_parts(args, store, "nothing", {}) is None
