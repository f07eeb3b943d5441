"""`relay delete SWEEP` and a `relay tune` of the same sweep that is starting: one of the two is refused, whole.

Why: `relay delete` checked the sweep's folder lock and let it go again, and `relay tune --resume` took the
lock only after its checks (seconds). A delete in those seconds removed the sweep's trials, its MLflow run
and its folder while the resume went on, and the resume failed on Ray Tune's missing tuner.pkl; a delete whose
check came just before a tune took the folder removed it from under the running sweep. Now `relay tune` holds
an existing sweep's folder before its checks, and `relay delete` holds it from its check to the removal. The
locks are real (flock on the folder, as another process's would be: flock is per open file).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.cli.records import cleanup
from orchestrator.cli.sweeps import tune as cli_tune
from orchestrator.engine.folder_lock import folder_locked
from tests.unit.orchestrator.tune.test_sweep_cluster_and_restart import sweep_file

SWEEP = "starting"


def a_sweep(tmp_path: Path, workspace: Path) -> tuple[Path, Path]:
    """Sweep SWEEP in WORKSPACE/tune/SWEEP (its config) with one finished trial: (its config file, its folder)."""
    config = sweep_file(tmp_path, SWEEP)
    folder = workspace / "tune" / SWEEP
    folder.mkdir(parents=True)
    (folder / "sweep-config.yaml").write_text(config.read_text())
    record = workspace / "artifacts" / "runs" / f"{SWEEP}-abcde_00000"
    record.mkdir(parents=True)
    (record / "ledger.json").write_text(json.dumps({"status": "FINISHED", "stages": {}}))
    (record / "sweep.json").write_text(json.dumps({"sweep": SWEEP, "folder": str(folder), "pipeline": "crest"}))
    return config, folder


def kept(workspace: Path) -> set[str]:
    return {str(path.relative_to(workspace)) for path in workspace.rglob("*") if "mlflow" not in path.name}


def test_a_tune_that_takes_the_folder_after_the_deletes_check_gets_it_and_nothing_is_deleted(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The `relay tune` starts while the delete waits for its `y` (or reads MLflow): it holds the folder by then."""
    _, folder = a_sweep(tmp_path, workspace)
    before = kept(workspace)
    with contextlib.ExitStack() as tune_started:

        def answered(args: Any) -> bool:
            tune_started.enter_context(folder_locked(folder))
            return True

        monkeypatch.setattr(cleanup, "confirmed", answered)
        assert main(["delete", SWEEP, "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"sweep {SWEEP} is not deleted: its `relay tune` is running on this machine (it holds {folder})" in err
    assert kept(workspace) == before


def test_a_delete_during_a_resumes_checks_is_refused_and_leaves_the_sweep_whole(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`relay delete SWEEP --yes` typed in the seconds `relay tune --resume` spends on its checks."""
    config, folder = a_sweep(tmp_path, workspace)
    before = kept(workspace)
    deleted: list[int] = []
    placed = cli_tune._placed_sweep

    def checking(*args: Any) -> Any:
        deleted.append(main(["delete", SWEEP, "--yes"]))
        return placed(*args)

    monkeypatch.setattr(cli_tune, "_placed_sweep", checking)
    main(["tune", str(config), "--resume"])  # then refused for what the folder holds: no state to go on from
    assert deleted == [2]
    err = capsys.readouterr().err
    assert f"sweep {SWEEP} is not deleted: its `relay tune` is running on this machine (it holds {folder})" in err
    assert kept(workspace) == before


@contextlib.contextmanager
def held(folder: Path) -> Iterator[None]:
    with folder_locked(folder):
        yield


def test_a_tune_starting_while_a_delete_removes_the_sweep_is_refused_before_its_checks(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    config, folder = a_sweep(tmp_path, workspace)
    with held(folder):  # what `relay delete` holds while it removes the sweep
        assert main(["tune", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert (
        f"sweep {SWEEP} is still running: another `relay tune` on this machine holds {folder} (or a `relay delete` "
        "of the sweep is removing it)"
    ) in err
