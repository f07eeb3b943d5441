"""A workspace this user may read but not write in: the commands that only read it work, the ones that write in it
refuse at once (exit 2, nothing written).

Before: `relay generations RUN` of such a workspace (another user's, a shared read-only copy) was refused with
"cannot write in WS (read-only)", though it writes nothing; and `relay run` / `relay resume` into a store whose
runs/ or stages/ this user may not write in logged the run's start, then failed at the run record's first write
(exit 1). The permission errors are real (chmod, and root run under ``setpriv`` without its override).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.records import StageRecord
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE
from tests.unit.orchestrator.cli.test_store_not_readable import STAGE, _files, _store
from tests.unit.unprivileged import relay_with_mode


def test_generations_reads_a_workspace_it_may_not_write_in(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    _store(workspace)
    tracker = MlflowTracker(f"sqlite:///{workspace / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline("r1", "crest", {}, resume=False)
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics={"balanced_accuracy": 0.75}))
    tracker.end_pipeline("FINISHED")
    before = _files(workspace)
    done = relay_with_mode(["generations", "r1", "--workspace", str(workspace)], workspace, 0o555)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cannot write in" not in done.stderr
    assert "0.7500" in done.stdout, done.stdout
    assert _files(workspace) == before


@pytest.mark.parametrize("folder", ["runs", "stages"])
def test_run_refuses_a_store_it_may_not_write_in_before_it_starts(tmp_path: Path, folder: str) -> None:
    workspace = tmp_path / "ws"
    store = _store(workspace)
    before = _files(workspace)
    argv = ["run", str(SMOKE), "run.executor=local", "--workspace", str(workspace)]
    done = relay_with_mode(argv, store / folder, 0o555)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(
        f"relay: 1 problem(s) in {SMOKE}:\n  - run.workspace: cannot write in the artifact store {store}: this user "
        f"may not write in {store / folder}; give it access (chmod -R u+rwX {store / folder}), or point "
        "run.workspace at another store"
    ), done.stderr[-3000:]
    assert "INFO" not in done.stderr  # refused before the run's start was logged
    assert _files(workspace) == before


def _tracked(workspace: Path) -> None:
    """Run r1 of the store ``_store`` made, finished in the workspace's MLflow database."""
    tracker = MlflowTracker(f"sqlite:///{workspace / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline("r1", "crest", {}, resume=False)
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics={"balanced_accuracy": 0.75}))
    tracker.end_pipeline("FINISHED")


def test_run_refuses_a_tracking_database_it_may_not_write_in(tmp_path: Path) -> None:
    """Before: the run went on untracked ("The MLflow record of run RUN is incomplete"), exit 0."""
    workspace = tmp_path / "ws"
    _store(workspace)
    _tracked(workspace)
    before = _files(workspace)
    argv = ["run", str(SMOKE), "run.executor=local", "--stop-after", "data/split", "--workspace", str(workspace)]
    done = relay_with_mode(argv, workspace / "mlflow.db", 0o444)
    assert done.returncode == 2, done.stderr[-3000:]
    assert (
        f"  - run.workspace: this user may not write in the tracking database {workspace / 'mlflow.db'} (read-only), "
        f"where MLflow records the run; give this user write access (chmod u+w {workspace / 'mlflow.db'}), or point "
        "the tracking store at another file"
    ) in done.stderr, done.stderr[-3000:]
    assert _files(workspace) == before


@pytest.mark.parametrize(
    ("command", "folder"),
    [(["delete", "r1", "--yes"], "runs"), (["delete", "r1", "--yes"], "stages"), (["gc"], "stages")],
    ids=["delete-runs", "delete-stages", "gc-stages"],
)
def test_delete_and_gc_refuse_a_store_they_may_not_remove_in(tmp_path: Path, command: list[str], folder: str) -> None:
    """Before: `relay delete` marked the MLflow runs deleted, then failed (exit 1) at the record or the stage folder;
    `relay gc` failed at the first folder it removed."""
    workspace = tmp_path / "ws"
    store = _store(workspace)
    _tracked(workspace)
    before = _files(workspace)
    done = relay_with_mode([*command, "--workspace", str(workspace)], store / folder, 0o555)
    assert done.returncode == 2, done.stderr[-3000:]
    assert (
        f"  - --workspace: cannot remove files in the artifact store {store}: this user may not write in "
        f"{store / folder}; give it access (chmod -R u+rwX {store / folder})"
    ) in done.stderr, done.stderr[-3000:]
    assert _files(workspace) == before


def test_gc_removes_in_stages_without_writing_in_runs(tmp_path: Path) -> None:
    """`relay gc` writes nothing in runs/: a runs/ it may only read is no reason to refuse."""
    workspace = tmp_path / "ws"
    store = _store(workspace)  # its run r1 has no ledger, so no run names the stage folder
    done = relay_with_mode(["gc", "--workspace", str(workspace)], store / "runs", 0o555)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (store / STAGE).exists()
