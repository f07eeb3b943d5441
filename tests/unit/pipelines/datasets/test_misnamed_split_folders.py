"""`relay data import` of ROOT/training/<class>/ (a split folder under another name than train/) says to rename it.

Before the fix: `holds class folders (training) but no train/ split ... Move the class folders into ROOT/train/`,
which, followed, gave ROOT/train/training/<class>/: one class. Real folders of PNG files, the real CLI.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli import main
from tests.unit.pipelines.datasets.test_import_folder_layouts import _classes, _refused

LAYOUT = "ROOT/train/<class>/<image> (test images, if any, in ROOT/test/<class>/<image> or ROOT/val/<class>/<image>)"


def test_a_training_folder_of_class_folders_is_to_be_renamed_train(tmp_path: Path, capsys) -> None:
    source = tmp_path / "pets"
    _classes(source / "training")
    problem = _refused(source, tmp_path / "out", capsys)
    assert problem == (
        f"SOURCE {str(source)!r} has no train/ split, but split folders under other names (training/ holds class "
        f"folders cat, dog): an image folder is laid out as {LAYOUT}. Rename {source}/training/ to {source}/train/, "
        "then import it again"
    )
    (source / "training").rename(source / "train")  # the advice, followed
    assert main(["data", "import", str(source), str(tmp_path / "out")]) == 0


def test_training_and_validation_folders_are_each_to_be_renamed(tmp_path: Path, capsys) -> None:
    source = tmp_path / "pets"
    _classes(source / "Training")
    _classes(source / "validation")
    problem = _refused(source, tmp_path / "out", capsys)
    assert problem.endswith(
        f"Rename {source}/Training/ to {source}/train/ and {source}/validation/ to {source}/val/, then import it again"
    )
    (source / "Training").rename(source / "train")
    (source / "validation").rename(source / "val")
    assert main(["data", "import", str(source), str(tmp_path / "out")]) == 0


def test_classes_of_nested_folders_keep_the_advice_to_move_them_into_train(tmp_path: Path, capsys) -> None:
    """cat/2019/*.png and dog/2019/*.png: class folders of nested folders, whose names say no split."""
    source = tmp_path / "pets"
    _classes(source / "cat", ("2019",))
    _classes(source / "dog", ("2019",))
    problem = _refused(source, tmp_path / "out", capsys)
    assert "holds class folders (cat, dog) but no train/ split" in problem
    assert f"Move the class folders into {source}/train/" in problem
