"""`relay resume TRIAL_ID` says the run is a sweep's trial and what to do instead: exit 2, nothing written.

Before the fix: it said there was no run TRIAL_ID in the artifact store and to list its runs with
`relay runs`, which lists the trial. Real ledgers, written by the real Runner into a real artifact
store under tmp_path, and the trial's record of its sweep (``trial`` of the `relay generations` tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_runs_trial_of_output_sweep import TWO, trial


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def resumed(tmp_path: Path, capsys, run_id: str, stop_after: str, ended: str | None) -> str:
    """The error `relay resume` of trial ``run_id`` (its sweep's trials.json saying ``ended``) exits 2 with, having
    written nothing."""
    output = tmp_path / "out"
    trial(tmp_path / "ws", output, run_id, stop_after)
    if ended is not None:
        (output / "trials.json").write_text(json.dumps([{"run_id": run_id, "status": ended}]))
    before = files_under(tmp_path)
    capsys.readouterr()
    assert main(["resume", run_id, "--workspace", str(tmp_path / "ws")], pipelines={"two": TWO}) == 2
    assert files_under(tmp_path) == before
    err = capsys.readouterr().err
    assert f"{run_id} is a trial of a sweep (`relay tune`), which `relay resume` does not continue" in err
    assert "no run" not in err
    return err


def test_a_trial_its_scheduler_stopped_has_nothing_left_to_run(tmp_path: Path, capsys, no_store_settings) -> None:
    err = resumed(tmp_path, capsys, "out-abcde_00001", "g00/evaluate", "stopped early")
    assert "its sweep's scheduler stopped it early, so nothing is left to run" in err
    assert f"`relay generations out-abcde_00001 --workspace {tmp_path / 'ws'}` shows the generations it ran" in err


def test_a_trial_of_a_cut_off_sweep_is_continued_by_its_sweep(tmp_path: Path, capsys, no_store_settings) -> None:
    err = resumed(tmp_path, capsys, "out-abcde_00002", "g00/evaluate", "interrupted")
    assert "`relay tune CONFIG --resume` continues its sweep" in err
    assert str(tmp_path / "out" / "sweep-config.yaml") in err


@pytest.mark.parametrize("ended", ["completed", None])
def test_a_finished_trial_has_nothing_left_to_run(tmp_path: Path, capsys, no_store_settings, ended: str | None) -> None:
    err = resumed(tmp_path, capsys, "out-abcde_00003", "g01/evaluate", ended)
    assert "it finished, so nothing is left to run" in err
