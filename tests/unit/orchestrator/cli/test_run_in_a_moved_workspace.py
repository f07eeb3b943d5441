"""A new run in a moved or copied workspace never writes outside it; the readers there say nothing untrue.

Before the fix: after `mv relay-workspace ws2`, `RELAY_WORKSPACE=ws2 relay run ...` created
./relay-workspace/mlartifacts again, holding the run's plots, config and model checkpoint, and in a `cp -a` copy the run
wrote into the original's mlartifacts: MLflow keeps each experiment's artifact location absolute in mlflow.db, and its
client cannot change it. `relay run` is refused there now (exit 2, nothing written), naming the old place and the ways
on; a new experiment in that store gets its own location and runs. And `relay generations` there said the newest run
"was tracked in" the old database while showing that run from the moved one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")
SMALL = ["run.executor=local", "train.steps=3", "crest.generations=1"]


def run_in(workspace: Path, run_id: str, *overrides: str) -> int:
    return main(["run", SMOKE, *SMALL, f"run.workspace={workspace}", *overrides, "--run-id", run_id])


def listing(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative, with its size: what a refused run must leave alone."""
    return {f"{p.relative_to(folder)}:{p.stat().st_size if p.is_file() else '-'}" for p in folder.rglob("*")}


@pytest.fixture
def first_run(tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings) -> Path:
    """A workspace holding one finished run, tracked in its own mlflow.db."""
    workspace = tmp_path / "relay-workspace"
    assert run_in(workspace, "first") == 0
    capsys.readouterr()
    return workspace


def test_a_run_in_a_moved_workspace_is_refused_and_writes_nothing(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    moved = tmp_path / "ws2"
    shutil.move(first_run, moved)
    before = listing(moved)
    assert run_in(moved, "second") == 2
    said = capsys.readouterr().err
    assert f"the MLflow store {moved / 'mlflow.db'} was moved from {first_run}" in said
    assert f"keeps its artifacts at {first_run / 'mlartifacts'}" in said
    assert f"move the workspace back to {first_run}" in said and "tracking.experiment=NAME" in said
    assert not first_run.exists(), "the old workspace was created again"
    assert listing(moved) == before, "a refused run wrote into the workspace"


def test_a_run_in_a_copied_workspace_leaves_the_original_alone(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(first_run, copy)
    original, copied = listing(first_run), listing(copy)
    assert run_in(copy, "second") == 2
    said = capsys.readouterr().err
    assert f"was copied from {first_run}" in said and f"run in the original, {first_run}" in said
    assert listing(first_run) == original and listing(copy) == copied


def test_a_new_experiment_of_a_moved_store_keeps_its_artifacts_inside(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    moved = tmp_path / "ws2"
    shutil.move(first_run, moved)
    assert run_in(moved, "second", "tracking.experiment=fresh") == 0
    assert not first_run.exists(), "the old workspace was created again"
    logged = {p.name for p in (moved / "mlartifacts").rglob("*") if p.is_file()}
    assert {"config.yaml", "generations.csv"} <= logged


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_the_newest_run_of_a_relocated_workspace_is_shown_without_an_untrue_note(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str
) -> None:
    there = tmp_path / "ws2"
    (shutil.move if how == "moved" else shutil.copytree)(first_run, there)
    assert main(["generations", "--workspace", str(there)]) == 0
    out = capsys.readouterr().out
    assert "Run first: per-generation results" in out
    assert "was tracked in" not in out and "The newest run of MLflow experiment" not in out


def test_a_sweep_in_a_moved_workspace_is_refused_and_writes_nothing(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    moved = tmp_path / "ws2"
    shutil.move(first_run, moved)
    before = listing(moved)
    assert main(["tune", SMOKE, f"run.workspace={moved}"]) == 2
    assert f"the MLflow store {moved / 'mlflow.db'} was moved from {first_run}" in capsys.readouterr().err
    assert not first_run.exists() and listing(moved) == before
