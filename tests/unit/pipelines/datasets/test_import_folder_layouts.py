"""`relay data import` of a folder laid out another way than an image folder says what is wrong and how to lay it out;
an import refused for an image that does not decode prints its message on a line of its own.

Before the fix: torchvision's ImageFolder root (ROOT/<class>/<image>, no train/), the train/ folder of an image folder,
and an empty folder were all told only that no source recognises them, with the list of every source. And with stderr
no terminal (a pipe, a log) the erased progress bar and the refusal ran on in one line:
`import train: 0%| | 0/11 ...relay: ...`. Real folders of PNG files, the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main
from pipelines.datasets.imports import SOURCES
from tests.unit.orchestrator.cli.problems import problem_lines

LAYOUT = "ROOT/train/<class>/<image> (test images, if any, in ROOT/test/<class>/<image> or ROOT/val/<class>/<image>)"


def _classes(folder: Path, names: tuple[str, ...] = ("cat", "dog"), count: int = 3) -> Path:
    for name in names:
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((6, 6, 3), i * 40, dtype=np.uint8)).save(folder / name / f"{i}.png")
    return folder


def _refused(source: Path, dest: Path, capsys: pytest.CaptureFixture) -> str:
    assert main(["data", "import", str(source), str(dest)]) == 2
    assert not dest.exists()
    [problem] = problem_lines(capsys.readouterr().err)
    return problem


def test_class_folders_without_train_say_so_and_how_to_lay_them_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = _classes(tmp_path / "pets")
    problem = _refused(source, tmp_path / "out", capsys)
    assert problem == (
        f"SOURCE {str(source)!r} holds class folders (cat, dog) but no train/ split: an image folder is laid out as "
        f"{LAYOUT}. Move the class folders into {source}/train/ (and test images into {source}/test/<class>/), "
        "then import it again"
    )


def test_the_train_folder_of_an_image_folder_says_to_pass_its_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "images"
    _classes(root / "train")
    _classes(root / "test")
    problem = _refused(root / "train", tmp_path / "out", capsys)
    assert problem == (
        f"SOURCE {str(root / 'train')!r} is the train/ split of the image folder {root} (class folders cat, dog): "
        f"pass {root} as SOURCE, which imports its train/ and test/ (or val/) together"
    )


def test_an_empty_folder_says_it_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (empty := tmp_path / "empty").mkdir()
    problem = _refused(empty, tmp_path / "out", capsys)
    assert problem.startswith(
        f"SOURCE {str(empty)!r} is an empty folder: nothing to import. Put the data in it as one of the folder "
        "sources reads it ("
    )
    folder_sources = {name: source for name, source in SOURCES.items() if source.recognise is not None}
    assert {"cifar10", "cifar100", "imagefolder"} <= set(folder_sources)
    for name, source in folder_sources.items():  # every folder source's layout, not ImageFolder's alone
        assert f"{name}: {source.description}" in problem

    (hidden := tmp_path / "hidden").mkdir()
    (hidden / ".DS_Store").write_bytes(b"")
    problem = _refused(hidden, tmp_path / "out", capsys)
    assert problem.startswith(f"SOURCE {str(hidden)!r} holds only hidden files (.DS_Store), which an import skips")


def test_a_folder_of_no_images_still_lists_the_sources(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (notes := tmp_path / "notes" / "sub").mkdir(parents=True)
    (notes / "a.txt").write_text("x")
    problem = _refused(notes.parent, tmp_path / "out", capsys)
    assert "is neither a source name nor a folder one recognises; valid: digits" in problem


def test_an_image_that_does_not_decode_is_reported_on_a_line_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "images"
    _classes(source / "train")
    (source / "train" / "cat" / "bad.png").write_bytes(b"not a png")
    assert main(["data", "import", str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "import train" in err, "the bar was drawn (stderr is captured, no terminal)"
    [message] = [line for line in err.split("\n") if "relay:" in line]
    assert message.startswith("relay: 1 problem(s)"), repr(err)
    [problem] = problem_lines(err)
    assert "bad.png does not decode as an image" in problem and "object at 0x" not in problem
