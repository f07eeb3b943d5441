"""`relay data import FOLDER DEST` where FOLDER holds Parquet shards as Relay names them (train/part-00000.parquet)
but no dataset.json: said what it lacks and where CONTRACTS says how to write it, exit 2, nothing written.

Before the fix: `SOURCE ... is neither a source name nor a folder one recognises; valid: ...`, where `relay data
info` of the same folder says it holds no dataset.json. Real shards written by the real writer, the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from pipelines.datasets import shards
from tests.unit.orchestrator.cli.problems import problem_lines
from tests.unit.pipelines.datasets.toy import write_toy

CONTRACTS = Path(__file__).resolve().parents[4] / "docs" / "CONTRACTS.md"


def test_shards_without_their_manifest_are_told_to_write_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, dest = tmp_path / "mine", tmp_path / "dest"
    write_toy(folder, n=100, test=10)
    (folder / shards.MANIFEST).unlink()
    assert main(["data", "import", str(folder), str(dest)]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(
        f"SOURCE {str(folder)!r} holds Parquet shards (train/part-00000.parquet, train/part-00001.parquet, "
        "train/part-00002.parquet, ...) but no dataset.json"
    ), problem
    assert "write it as docs/CONTRACTS.md says under 'Writing a dataset yourself'" in problem, problem
    assert "neither a source name" not in problem
    assert "## Writing a dataset yourself" in CONTRACTS.read_text()  # the section the message names
    assert not dest.exists()


def test_what_an_unfinished_import_left_is_told_to_be_imported_again(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A killed import's folder (its marker, shards, no manifest) needs its import re-run, not a manifest by hand."""
    folder = tmp_path / "half"
    write_toy(folder, n=20)
    (folder / shards.MANIFEST).unlink()
    shards.write_marker(str(folder))
    assert main(["data", "import", str(folder), str(tmp_path / "dest")]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"SOURCE {str(folder)!r} is what an unfinished import left"), problem
    assert "re-run the import that wrote it" in problem and not (tmp_path / "dest").exists()
