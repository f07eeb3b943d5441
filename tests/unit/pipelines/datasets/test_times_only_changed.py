"""A repeated `relay data import` after only `chmod` or a hard link (the files' ctime changed, no byte did) is still
refused, by design (``checks.files_fingerprint``), and the message names what else changes a file's times and how to
go on. Before the fix it named only "a file edited in place, or two swapped", which the user knew they had not done.
Real folders of PNG files, real chmod and link, the real CLI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines
from tests.unit.pipelines.datasets.test_digest_leaves_out_source_times import image_folder


def _chmod(image: Path, tmp_path: Path) -> None:
    image.chmod(0o600)


def _hard_link(image: Path, tmp_path: Path) -> None:
    os.link(image, tmp_path / "elsewhere.png")


@pytest.mark.parametrize("touch", [_chmod, _hard_link], ids=["chmod", "hard link"])
def test_a_times_only_change_is_refused_saying_what_else_changes_times_and_how_to_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture, touch: Callable[[Path, Path], None]
) -> None:
    source, dest = image_folder(tmp_path / "src"), tmp_path / "dest"
    assert main(["data", "import", str(source), str(dest)]) == 0
    time.sleep(0.02)  # the kernel's file clock ticks every few ms: the change's ctime is a later one
    image = source / "train" / "cat" / "0.png"
    before = image.read_bytes()
    touch(image, tmp_path)
    assert image.read_bytes() == before
    capsys.readouterr()
    assert main(["data", "import", str(source), str(dest)]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"the source {source} changed since it was imported into {dest}: still 4 file(s), ")
    assert "of the same names and sizes, but modified since (a file edited in place, or two swapped;" in problem
    assert "`touch`, `chmod`, a hard link, or a copy that kept the old mtime (`cp -p`, `rsync -a`)" in problem
    assert problem.endswith(f"; remove {dest} (or import into a new path) to re-import"), problem
