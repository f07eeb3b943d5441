"""One answer to "where am I" when the current folder was deleted under the process (a Ray job's driver whose
working_dir Ray unpacked again): ``current_directory`` says None, and every place that asks agrees with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.tracking.common import deleted_cwd, explained
from orchestrator.yaml_input import current_directory


def test_an_existing_folder_is_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert current_directory() == tmp_path
    assert deleted_cwd() is None


def test_a_deleted_folder_is_none_and_named_where_it_can_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "working_dir"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(FileNotFoundError):
        Path.cwd()

    assert current_directory() is None
    if Path("/proc/self/cwd").exists():
        assert deleted_cwd() == str(gone)
    else:
        assert deleted_cwd() == "(its path unknown)"
    bare = FileNotFoundError(2, "No such file or directory")
    assert explained(bare).endswith(
        f"current directory {deleted_cwd()} was deleted, and paths relative to it cannot be resolved"
    )
