"""The sweep's MLflow parent run: a new sweep gets its own, a resumed one finds the one it started."""

from __future__ import annotations

from pathlib import Path

from orchestrator.tracking.sweeps import SweepTracker


def started(tmp_path: Path, output: str, resume: bool = False) -> str | None:
    tracker = SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", strict=True)
    return tracker.start("s1-sweep", "s1", {"tune.num_samples": "1"}, "space: {}\n", output=output, resume=resume)


def test_a_second_sweep_of_the_same_name_gets_its_own_parent(tmp_path: Path) -> None:
    """Before, `relay tune s1.yaml --output other` nested its trials under the first sweep and overwrote its best."""
    first = started(tmp_path, "/ws/tune/s1-sweep")
    second = started(tmp_path, "/elsewhere/other")
    third = started(tmp_path, "/ws/tune/s1-sweep")  # a new sweep at the same folder (the old one was removed)
    assert len({first, second, third}) == 3 and None not in {first, second, third}


def test_resume_finds_the_parent_of_the_sweep_at_that_folder(tmp_path: Path) -> None:
    first = started(tmp_path, "/ws/tune/s1-sweep")
    other = started(tmp_path, "/elsewhere/other")
    assert started(tmp_path, "/ws/tune/s1-sweep", resume=True) == first
    assert started(tmp_path, "/elsewhere/other", resume=True) == other
