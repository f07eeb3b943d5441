"""The parts of `relay delete` / `relay gc` that need no run: sizes, the refusal's wording, the store's folder calls."""

from __future__ import annotations

import argparse
import io

import pytest

from orchestrator.cli.records import cleanup, stage_folders
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import ConfigError


@pytest.mark.parametrize(
    ("size", "shown"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**2 + 1, "5.0 MiB")]
)
def test_sizes_read_as_du_counts_them(size: int, shown: str) -> None:
    assert stage_folders.human_size(size) == shown


def test_a_resume_refusal_is_worded_for_a_deletion() -> None:
    """resume_guard says how to resume; `relay delete` must say how to delete (and take --driver-gone itself)."""
    problem = (
        "run r1 is RUNNING with its driver on another machine (h2, pid 7), which cannot be checked from here; wait for "
        "it (`relay runs` shows its progress) or stop it there. If that driver is gone (its machine lost, its process "
        "killed), resume with: relay resume r1 --driver-gone"
    )
    worded = stage_folders.for_deletion(problem, "r1")
    assert worded.endswith("delete it with: relay delete r1 --driver-gone")
    assert "resume" not in worded
    assert stage_folders.for_deletion("... or stop it (Ctrl-C there, or `kill 9`), then resume", "r1").endswith(
        "then delete it"
    )
    assert stage_folders.for_gc("... `kill 9`), then resume").endswith("then run `relay gc` again")


def test_off_a_terminal_without_yes_is_refused(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(ConfigError, match="add --yes"):
        cleanup.confirmed(argparse.Namespace(yes=False))
    assert cleanup.confirmed(argparse.Namespace(yes=True))


@pytest.mark.parametrize(("answer", "agreed"), [("y\n", True), ("yes\n", True), ("\n", False), ("n\n", False)])
def test_on_a_terminal_only_yes_agrees(monkeypatch, answer: str, agreed: bool) -> None:
    terminal = io.StringIO(answer)
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    assert cleanup.confirmed(argparse.Namespace(yes=False)) is agreed


def test_the_store_lists_sizes_and_removes_whole_folders(tmp_path) -> None:
    store = ArtifactStore(str(tmp_path))
    (tmp_path / "stages" / "aa" / "files").mkdir(parents=True)
    (tmp_path / "stages" / "aa" / "files" / "x.png").write_bytes(b"1" * 10)
    (tmp_path / "stages" / "aa" / "out.parquet").write_bytes(b"2" * 5)
    (tmp_path / "stages" / "bb").mkdir()
    (tmp_path / "stages" / "not-a-folder").write_bytes(b"")

    assert store.subfolders("stages") == ["aa", "bb"]
    assert store.subfolders("nothing-here") == []
    assert store.folder_bytes("stages/aa") == 15
    store.delete_folder("stages/aa")
    store.delete_folder("stages/gone")  # already gone: no error
    assert store.subfolders("stages") == ["bb"]


def test_gc_of_a_store_that_is_not_there_is_bad_input(tmp_path, capsys) -> None:
    """A mistyped --workspace got "0 B freed", exit 0, as if the store had been looked through."""
    from orchestrator.cli import main

    assert main(["gc", "--workspace", str(tmp_path / "nows")]) == 2
    assert f"{tmp_path / 'nows' / 'artifacts'} does not exist: check the path" in capsys.readouterr().err
    assert not (tmp_path / "nows").exists()
