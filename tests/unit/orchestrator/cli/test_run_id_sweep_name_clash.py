"""A run id that is a sweep's name, or a sweep named as a run is, is refused where the second would be made.

Why: `relay delete NAME`, `relay generations NAME` and `relay status NAME` take a run id or a sweep's name, and
with both there each picked one without a word (`relay delete` took the run, and the sweep could no longer be
deleted by its name). Bad input: exit 2, one message naming the clash and the fix, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.tune.test_sweep_cluster_and_restart import sweep_file

ROOT = Path(__file__).resolve().parents[4]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


def tree(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("*"))}


def a_sweep_folder(workspace: Path, name: str) -> None:
    """What `relay tune` leaves in WORKSPACE/tune/NAME before its first trial: the config it started with."""
    (workspace / "tune" / name).mkdir(parents=True)
    (workspace / "tune" / name / "sweep-config.yaml").write_text(SMOKE.read_text())


def a_trial_of(workspace: Path, sweep: str, folder: Path) -> None:
    """A trial's record (a ledger and its sweep.json) of a sweep written with --output elsewhere."""
    record = workspace / "artifacts" / "runs" / f"{sweep}-abcde_00000"
    record.mkdir(parents=True)
    (record / "ledger.json").write_text(json.dumps({"status": "FINISHED", "stages": {}}))
    (record / "sweep.json").write_text(json.dumps({"sweep": sweep, "folder": str(folder), "pipeline": "crest"}))


def run_refused(tmp_path: Path, capsys: pytest.CaptureFixture, run_id: str) -> str:
    before = tree(tmp_path)
    code = main(["run", str(SMOKE), "run.executor=local", "train.steps=2", "--run-id", run_id])
    err = capsys.readouterr().err
    assert code == 2, err
    assert tree(tmp_path) == before
    return err


def test_a_run_id_that_is_a_sweeps_name_is_refused(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    a_sweep_folder(workspace, "lr-search")
    err = run_refused(tmp_path, capsys, "lr-search")
    assert err.splitlines() == [
        "relay: 1 problem(s) in the command line:",
        f"  - --run-id: 'lr-search' is the name of a sweep (its folder {workspace / 'tune' / 'lr-search'}), and "
        "`relay delete`, `relay generations` and `relay status` take a run id or a sweep's name: pick another id "
        "(or leave --run-id out for a new one)",
    ]


def test_a_sweep_written_elsewhere_is_found_by_its_trials(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    a_trial_of(workspace, "lr-search", tmp_path / "elsewhere")
    err = run_refused(tmp_path, capsys, "lr-search")
    assert f"is the name of a sweep (its trial lr-search-abcde_00000 in {workspace / 'artifacts'})" in err


def test_a_run_id_that_only_starts_like_a_trial_is_taken(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    """`lr` is no sweep: lr-search's trials start with `lr-` but name their own sweep."""
    a_trial_of(workspace, "lr-search", tmp_path / "elsewhere")
    assert main(["run", str(SMOKE), "run.executor=local", "--run-id", "lr", "--stop-after", "data/split"]) == 0


def test_a_sweep_named_as_a_run_is_refused(tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture) -> None:
    record = workspace / "artifacts" / "runs" / "lr-search"
    record.mkdir(parents=True)
    (record / "config.yaml").write_text(SMOKE.read_text())
    config = sweep_file(tmp_path, "lr-search")
    before = tree(tmp_path)

    assert main(["tune", str(config), "train.steps=2", "crest.generations=1", "run.num_cpus=2"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-2:] == [
        f"relay: 1 problem(s) in {config}:",
        f"  - tune.name: 'lr-search' is the id of a run in {workspace / 'artifacts'}, and `relay delete`, `relay "
        "generations` and `relay status` take a run id or a sweep's name: name the sweep otherwise (tune.name=NEW)",
    ]
    assert tree(tmp_path) == before
