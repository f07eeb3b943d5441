"""`relay data import` of an image folder refused for an image that does not decode prints its message alone: it
printed the progress bar of the split it stopped in (and of each split before it) above the message. A finished
import still prints each split's last bar line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def shown(text: str) -> list[str]:
    """The lines ``text`` leaves on a terminal: each carriage return writes over its line from the start."""
    lines = []
    for raw in ANSI.sub("", text).split("\n"):
        cells: list[str] = []
        for part in raw.split("\r"):
            cells[: len(part)] = part
        if line := "".join(cells).rstrip():
            lines.append(line)
    return lines


def image_folder(root: Path, bad: str | None = None) -> Path:
    """train/ and test/ of two classes, 12 PNGs each; ``bad`` (a path under root) replaced by text."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            for index in range(12):
                path = root / split / label / f"{index}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)
    if bad is not None:
        (root / bad).write_text("not an image\n")
    return root


@pytest.mark.parametrize("bad", ["train/b/11.png", "test/b/11.png"])
def test_an_image_that_does_not_decode_prints_its_message_alone(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = image_folder(tmp_path / "images", bad)
    dest = tmp_path / "dest"
    assert main(["data", "import", str(source), str(dest)]) == 2
    assert not dest.exists()
    captured = capsys.readouterr()
    assert shown(captured.out) == []
    assert shown(captured.err) == [
        "relay: 1 problem(s) in relay data:",
        f"  - imagefolder: {source / bad} does not decode as an image (cannot identify image file "
        f"'{source / bad}'); fix or remove it",
    ]


def test_a_finished_import_prints_each_splits_last_bar_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "import", str(image_folder(tmp_path / "images")), str(tmp_path / "dest")]) == 0
    bars = shown(capsys.readouterr().err)
    assert [line.split("|")[0].split() for line in bars] == [["import", "train:", "100%"], ["import", "test:", "100%"]]
    assert bars[0].split("|")[2].startswith(" 24/24 [") and bars[1].split("|")[2].startswith(" 24/24 [")
