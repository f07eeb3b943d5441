"""Classes named by name (`data.classes: [dog, cat]`) become the dataset's class numbers when the config is read."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.config import ConfigError
from pipelines.datasets import imports
from tests.unit.pipelines.test_data_root import SMOKE, _cifar10, _image_folder, _write_png

CONFIGS = Path(SMOKE).parent
SPLIT = ["data.head_count=8", "data.imbalance_ratio=2", "data.holdout_per_class=2", "data.labeled_fraction=0.5"]


def _three_classes(root: Path) -> Path:
    """An image folder of classes bird, cat, dog (numbered 0, 1, 2: the sorted folder names)."""
    _image_folder(root)
    for i in range(12):
        _write_png(root / "train" / "bird" / f"{i}.png", 100 + i)
    return root


def test_an_image_folders_class_names_become_its_numbers_in_the_pinned_config(tmp_path: Path) -> None:
    root = _three_classes(tmp_path / "folder")
    overrides = ["data.name=imagefolder", f"data.root={root}", "data.classes=[dog, bird]", *SPLIT]
    _, config, pinned = load_pipeline_file(SMOKE, overrides, local=False)
    assert config.data.classes == [2, 0] and pinned["data"]["classes"] == [2, 0]
    mixed = ["data.name=imagefolder", f"data.root={root}", "data.classes=[dog, 1]", *SPLIT]
    assert load_pipeline_file(SMOKE, mixed, local=False)[1].data.classes == [2, 1]


def test_a_name_spelled_in_another_unicode_form_is_the_same_class(tmp_path: Path) -> None:
    root = _three_classes(tmp_path / "folder")
    (root / "train" / "cat").rename(root / "train" / unicodedata.normalize("NFD", "café"))
    overrides = ["data.name=imagefolder", f"data.root={root}", "data.classes=[café, dog]", *SPLIT]  # NFC
    assert load_pipeline_file(SMOKE, overrides, local=False)[1].data.classes == [1, 2]


def test_cifar_and_imported_datasets_name_their_classes(tmp_path: Path) -> None:
    cifar = _cifar10(tmp_path / "cifar", rows=20)
    extra = ["data.head_count=2", "data.imbalance_ratio=1", "data.holdout_per_class=0", "data.labeled_fraction=0.5"]
    overrides = ["data.name=cifar10", f"data.root={cifar}", "data.classes=[c7, c3]", *extra]
    assert load_pipeline_file(SMOKE, overrides, local=False)[1].data.classes == [7, 3]
    imports.import_dataset(str(_three_classes(tmp_path / "folder")), str(tmp_path / "shards"), {"image_size": 8})
    shards = ["data.name=parquet", f"data.uri={tmp_path / 'shards'}", "data.classes=[cat, bird]", *SPLIT]
    assert load_pipeline_file(SMOKE, shards, local=False)[1].data.classes == [1, 0]


def test_the_transfer_source_and_lwf_old_classes_take_names_too(tmp_path: Path) -> None:
    root = _three_classes(tmp_path / "folder")
    for i in range(12):
        _write_png(root / "train" / "ant" / f"{i}.png", 150 + i)  # ant 0, bird 1, cat 2, dog 3
    folder = ["data.name=imagefolder", f"data.root={root}", *SPLIT, "data.classes=[dog, cat]"]
    transfer = load_pipeline_file(str(CONFIGS / "transfer_digits.yaml"), [*folder, "transfer.source_classes=[ant, 1]"])
    assert transfer[1].data.classes == [3, 2] and transfer[1].transfer.source_classes == [0, 1]
    lwf = load_pipeline_file(str(CONFIGS / "lwf_digits.yaml"), [*folder, "lwf.old_classes=[bird, ant]"])
    assert lwf[1].lwf.old_classes == [1, 0]
    with pytest.raises(
        ConfigError, match=r"source_classes \['bird', 'cat'\] and data.classes \['dog', 'cat'\] share classes \['cat'\]"
    ):
        load_pipeline_file(str(CONFIGS / "transfer_digits.yaml"), [*folder, "transfer.source_classes=[bird, cat]"])


def refused_run_on_three_classes(tmp_path: Path, capsys, override: str) -> str:
    """What `relay run` says on stderr when ``override`` on a bird/cat/dog folder is refused (exit 2, nothing written)."""
    workspace = tmp_path / "ws"
    folder = ["data.name=imagefolder", f"data.root={_three_classes(tmp_path / 'folder')}", override, *SPLIT]
    code = main(["run", SMOKE, *folder, f"run.workspace={workspace}"])
    assert code == 2 and not workspace.exists()
    return capsys.readouterr().err


def test_names_that_are_no_class_are_bad_input_naming_the_classes(tmp_path: Path, capsys) -> None:
    err = refused_run_on_three_classes(tmp_path, capsys, "data.classes=[dog, zebra]")
    assert (
        "data.classes: 'zebra' is not a class of dataset 'imagefolder'; its classes: 0 bird, 1 cat, 2 dog; "
        "give one of these names or numbers" in err
    )
    with pytest.raises(ConfigError, match="'seven' is not a class of dataset 'digits', whose classes have numbers"):
        load_pipeline_file(SMOKE, ["data.classes=[seven, 3]"], local=False)
    with pytest.raises(ConfigError, match=r"expected distinct class numbers >= 0 or class names, got \['dog', 'dog'\]"):
        load_pipeline_file(SMOKE, ["data.classes=[dog, dog]"], local=False)


def test_class_order_takes_names_pinned_as_the_numbers_the_split_reads(tmp_path: Path) -> None:
    """Before, `data.class_order` took numbers only, and a list of names was one 'must be a valid integer' per name."""
    folder = ["data.name=imagefolder", f"data.root={_three_classes(tmp_path / 'folder')}", *SPLIT]
    _, config, pinned = load_pipeline_file(SMOKE, [*folder, "data.class_order=[dog, bird, 1]"], local=False)
    assert config.data.class_order == [2, 0, 1] and pinned["data"]["class_order"] == [2, 0, 1]
    task = [*folder, "data.classes=[dog, cat]", "data.class_order=[cat, dog]"]
    assert load_pipeline_file(SMOKE, task, local=False)[1].data.class_order == [1, 0], "the task numbers dog 0, cat 1"
    with pytest.raises(ConfigError, match=r"'bird' is not a class of the task, data.classes \['dog', 'cat'\]"):
        load_pipeline_file(SMOKE, [*folder, "data.classes=[dog, cat]", "data.class_order=[bird, dog]"], local=False)


def test_a_class_order_name_that_is_no_class_is_bad_input_naming_the_classes(tmp_path: Path, capsys) -> None:
    err = refused_run_on_three_classes(tmp_path, capsys, "data.class_order=[dog, cat, zebra]")
    assert "1 problem" in err
    assert "data.class_order: 'zebra' is not a class of dataset 'imagefolder'; its classes: 0 bird, 1 cat, 2 dog" in err


@pytest.mark.parametrize("key", ["data.class_order", "data.classes"])
@pytest.mark.parametrize("value", ["[1.5, 2.5, 3.5]", "[[1], [2], [3]]", "[{a: 1}, 2, 3]"])
def test_a_class_list_of_the_wrong_type_is_one_problem_for_the_key(key: str, value: str, capsys) -> None:
    """pydantic checked each item against int, then str: one line per item, none saying what the key takes."""
    assert main(["validate", SMOKE, f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert "1 problem" in err and f"{key}[" not in err
    assert f"{key}: expected a list of class numbers (whole numbers >= 0) or class names" in err


def test_a_named_class_order_missing_classes_is_bad_input_in_the_users_terms(tmp_path: Path, capsys) -> None:
    """It was refused by the split with the pinned numbers: "class_order: expected a permutation of 0..2; got [2, 1]"."""
    root = _three_classes(tmp_path / "folder")
    args = ["data.name=imagefolder", f"data.root={root}", "data.class_order=[dog, cat]", *SPLIT]
    assert main(["validate", SMOKE, *args]) == 2
    err = capsys.readouterr().err
    assert "1 problem" in err
    assert "data.class_order: expected each of the task's 3 classes once, got ['dog', 'cat'] (missing bird)" in err
    task = [*args[:2], "data.classes=[dog, cat, bird]", "data.class_order=[cat, cat, 0]", *SPLIT]
    assert main(["validate", SMOKE, *task]) == 2
    assert "(missing bird; more than once: cat)" in capsys.readouterr().err


def test_a_class_order_of_numbers_missing_classes_names_the_key(capsys) -> None:
    assert main(["validate", SMOKE, "data.class_order=[9, 4]"]) == 2
    assert "data.class_order: expected each class number 0..9 once; got [9, 4]" in capsys.readouterr().err
