"""A local artifact store the user may not read, or whose runs/ is no folder, is bad input for every command that
reads it: one line naming the folder and the fix, exit 2, nothing removed or written.

Before: a workspace of mode 000 ended `relay runs`, `generations`, `delete`, `gc`, `diff` and `resume` in a
PermissionError traceback; a runs/ folder that could not be listed (mode 000, or a file) read as a store with no
runs, so `relay runs` said "no runs yet", `relay delete RUN` "no run RUN", and `relay gc` removed every stage
output of every run as named by no ledger.

The permission errors are real: the folder is chmod 000 and the command runs in a subprocess that may not override
it (root runs it under ``setpriv`` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, as
tests/unit/pipelines/test_unreadable_image_folder.py does).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.unprivileged import relay_with_mode

STAGE = "stages/0123abcd/out.parquet"


def _store(workspace: Path) -> Path:
    """A workspace whose store holds one run record and one stage folder (enough for each command to read)."""
    store = workspace / "artifacts"
    (store / "runs" / "r1").mkdir(parents=True)
    (store / "runs" / "r1" / "config.yaml").write_text(f"pipeline: crest\nrun:\n  workspace: {workspace}\n")
    (store / STAGE).parent.mkdir(parents=True)
    (store / STAGE).write_bytes(b"stage output")
    return store


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused_without_read(argv: list[str], workspace: Path, unreadable: Path) -> str:
    """``relay ARGV`` with ``unreadable`` chmod 000, run as a user it refuses: its stderr, once it exited 2 and
    left the workspace as it was."""
    before = _files(workspace)
    done = relay_with_mode([*argv, "--workspace", str(workspace)], unreadable, 0)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and done.stderr.count("relay: ") == 1, done.stderr[-3000:]
    assert _files(workspace) == before
    return done.stderr


@pytest.mark.parametrize(
    "argv",
    [["runs"], ["generations", "r1"], ["delete", "r1", "--yes"], ["gc"], ["diff", "r1", "r1"], ["resume", "r1"]],
    ids=lambda argv: argv[0],
)
def test_a_workspace_the_user_may_not_read_is_named_with_the_fix(tmp_path: Path, argv: list[str]) -> None:
    workspace = tmp_path / "ws"
    store = _store(workspace)
    err = _refused_without_read(argv, workspace, workspace)
    assert (
        f"--workspace: cannot read the artifact store {store}: this user may not read {workspace}; give it read "
        f"access (chmod -R u+rX {workspace}), or point --workspace at another store"
    ) in err, err


@pytest.mark.parametrize("argv", [["gc"], ["runs"], ["delete", "r1", "--yes"]], ids=lambda argv: argv[0])
def test_a_runs_folder_the_user_may_not_read_is_no_store_without_runs(tmp_path: Path, argv: list[str]) -> None:
    """`relay gc` removed the stage folder here: with runs/ unlisted, no ledger named it."""
    workspace = tmp_path / "ws"
    store = _store(workspace)
    err = _refused_without_read(argv, workspace, store / "runs")
    assert f"this user may not read {store / 'runs'}; give it read access" in err, err
    assert (store / STAGE).read_bytes() == b"stage output"


@pytest.mark.parametrize("argv", [["gc"], ["runs"]], ids=lambda argv: argv[0])
def test_a_runs_folder_that_is_a_file_is_a_damaged_store(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """`relay gc` removed every stage folder (exit 0); `relay runs` said "no runs ... yet"."""
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    workspace = tmp_path / "ws"
    store = _store(workspace)
    (store / "runs" / "r1" / "config.yaml").unlink()
    (store / "runs" / "r1").rmdir()
    (store / "runs").rmdir()
    (store / "runs").write_text("not a folder")
    before = _files(workspace)
    assert main([*argv, "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert (
        f"relay: 1 problem(s) in the command line:\n  - --workspace: the artifact store {store} is damaged: "
        f"{store / 'runs'}, where it keeps the run records, is a file; move that file away, or point --workspace "
        "at another store"
    ) in err, err
    assert _files(workspace) == before


def test_a_runs_folder_that_cannot_be_listed_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    """What every reader of the run records lists them with (a remote store that refuses the listing alike)."""
    from orchestrator.engine.artifacts import ArtifactStore
    from orchestrator.errors import ArtifactError

    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ArtifactError, match="could not list"):
        ArtifactStore(str(tmp_path)).newest_records("runs", "config.yaml")
    assert ArtifactStore(str(tmp_path / "empty")).newest_records("runs", "config.yaml") == []


@pytest.mark.parametrize(
    "argv", [["resume", "r1"], ["generations", "r1"], ["runs"], ["delete", "r1", "--yes"]], ids=lambda argv: argv[0]
)
@pytest.mark.parametrize("closed", ["runs/r1", "runs/r1/config.yaml"])
def test_a_run_record_the_user_may_not_read_is_named_with_the_fix(tmp_path: Path, argv: list[str], closed: str) -> None:
    """One run's folder (or its config) of mode 000 ended these commands with exit 1: "could not read ...
    Permission denied", no fix."""
    workspace = tmp_path / "ws"
    store = _store(workspace)
    err = _refused_without_read(argv, workspace, store / closed)
    assert f"this user may not read {store / closed}; give it read access (chmod -R u+rX {store / closed})" in err
