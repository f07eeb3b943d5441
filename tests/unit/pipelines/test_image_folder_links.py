"""A dangling symlink in an image folder (before the fix: a bare "[Errno 2] No such file or directory", exit 2).

It is now refused like the folder's other problems: prefixed `imagefolder:`, naming the link, its
missing target and the fix, by `relay run` / `relay validate` (data.root) and `relay data import`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")


def _folder_with_a_dangling_link(root: Path) -> Path:
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    os.symlink(root / "gone.png", root / "train" / "cat" / "link.png")
    return root / "train" / "cat" / "link.png"


@pytest.mark.parametrize("command", ["validate", "run", "import"])
def test_a_dangling_symlink_is_named_with_its_fix(tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    link = _folder_with_a_dangling_link(tmp_path / "images")
    root = tmp_path / "images"
    if command == "import":
        args = ["data", "import", str(root), str(tmp_path / "dest")]
    else:
        args = [command, SMOKE, f"run.workspace={tmp_path / 'ws'}", "data.name=imagefolder", f"data.root={root}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"imagefolder: 1 symlink(s) whose target does not exist: {link} -> {root / 'gone.png'}" in err, err
    assert "restore the target(s) or remove the link(s)" in err and "[Errno 2]" not in err
    assert not (tmp_path / "ws").exists() and not (tmp_path / "dest").exists()
