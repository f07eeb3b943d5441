"""A user's own image folder (`data.name=imagefolder data.root=DIR`): what it reads, and the bad input it refuses.

Every folder here is real PNG (or TIFF) files written by PIL; the CLI runs in this process and
refuses before Ray starts, so a refusal is exit 2 with one message and no workspace.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main
from orchestrator.cli.pipeline_files import load_pipeline_file
from pipelines import data, image_folder
from pipelines.data import load_imagefolder, load_labels
from pipelines.datasets import imports

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")
SPLIT = ["data.head_count=8", "data.imbalance_ratio=2", "data.holdout_per_class=2", "data.labeled_fraction=0.5"]


def _write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def _image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 12) -> Path:
    for label, name in enumerate(classes):
        for i in range(per_class):
            _write_png(root / "train" / name / f"{i}.png", 20 * label + i)
    return root


def _refused(tmp_path: Path, command: str, capsys: pytest.CaptureFixture, *overrides: str) -> str:
    """The message of a command that must exit 2 and write nothing."""
    assert main([command, SMOKE, f"run.workspace={tmp_path / 'ws'}", *overrides]) == 2
    assert not (tmp_path / "ws").exists(), "bad input must not create the workspace"
    message = capsys.readouterr().err
    assert "Traceback" not in message
    return message


# --- data.root on a dataset that reads no folder -----------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "synthetic"])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_root_on_a_dataset_that_reads_no_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, name: str, command: str
) -> None:
    root = _image_folder(tmp_path / "folder")
    message = _refused(tmp_path, command, capsys, f"data.name={name}", f"data.root={root}")
    assert "data.root applies only to datasets read from a folder (cifar10, cifar100, imagefolder)" in message
    assert f"dataset {name!r}" in message and "set data.name=imagefolder" in message


# --- a decompression bomb ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose one image has more pixels than PIL's limit (2 x MAX_IMAGE_PIXELS = 178956970).

    13500 x 13500 at 1 bit a pixel: 22 KB on disk, written in about a second.
    """
    root = _image_folder(tmp_path_factory.mktemp("bomb") / "folder")
    Image.new("1", (13500, 13500)).save(root / "train" / "cat" / "huge.png")
    return root


def test_a_decompression_bomb_is_named_with_the_fix_by_run_and_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture, bomb_folder: Path
) -> None:
    huge = bomb_folder / "train" / "cat" / "huge.png"
    for command in ("run", "validate"):
        message = _refused(tmp_path, command, capsys, "data.name=imagefolder", f"data.root={bomb_folder}", *SPLIT)
        assert f"data.root: imagefolder: {huge} has too many pixels for PIL's decompression-bomb limit" in message
        assert "resize it, or remove it" in message


def test_a_decompression_bomb_is_named_by_the_import_and_the_loader(tmp_path: Path, bomb_folder: Path) -> None:
    huge = bomb_folder / "train" / "cat" / "huge.png"
    assert main(["data", "import", str(bomb_folder), str(tmp_path / "shards")]) == 2
    assert not (tmp_path / "shards").exists()
    with pytest.raises(ValueError, match=f"{huge} has too many pixels for PIL's decompression-bomb limit"):
        imports.import_dataset(str(bomb_folder), str(tmp_path / "shards"), {})
    with pytest.raises(ValueError, match=f"{huge} has too many pixels"):
        load_imagefolder(str(bomb_folder), 8)


# --- a single class ----------------------------------------------------------------------------------


def test_a_folder_of_one_class_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _image_folder(tmp_path / "folder", classes=("cat",))
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        load_labels("imagefolder", str(root))
    message = _refused(tmp_path, "run", capsys, "data.name=imagefolder", f"data.root={root}", *SPLIT)
    assert f"{root / 'train'} holds 1 class folder (cat); a classifier needs at least 2 classes" in message


def test_a_test_folder_of_one_class_is_a_subset_of_train(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    _write_png(root / "test" / "dog" / "0.png", 7)
    labels = load_labels("imagefolder", str(root))
    assert labels.num_classes == 2 and labels.test.tolist() == [1]


# --- more than 8 bits a channel ----------------------------------------------------------------------


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    """A 16-bit value of 257 k is 8-bit k: the image reads as its 8-bit twin (PIL's convert clipped it to 255)."""
    root = _image_folder(tmp_path / "folder")
    eight = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4  # 0..252
    path = root / "train" / "cat" / "deep.png"
    Image.fromarray(eight.astype(np.uint16) * 257).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16", "PIL wrote a 16-bit PNG"
    loaded = load_imagefolder(str(root), 8).train
    deep = loaded.images[sorted(p.name for p in path.parent.iterdir()).index("deep.png")].numpy()
    assert all(np.array_equal(channel, eight) for channel in deep)


def test_a_16_bit_png_rounds_to_the_nearest_8_bit_value(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 385, 65535, 65278]], dtype=np.uint16)  # /257: 0, .498, .502, 1.498, 255, 254
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as opened:
        assert np.asarray(image_folder.eight_bit(opened, "deep.png")).tolist() == [[0, 0, 1, 1, 255, 254]]


def test_32_bit_integer_and_float_images_scale_by_their_mode(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 257, 65535]], dtype=np.int32)).save(tmp_path / "int.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "float.tif")
    with Image.open(tmp_path / "int.tif") as integers, Image.open(tmp_path / "float.tif") as floats:
        assert (integers.mode, floats.mode) == ("I", "F")
        assert np.asarray(image_folder.eight_bit(integers, "int.tif")).tolist() == [[0, 1, 255]]
        assert np.asarray(image_folder.eight_bit(floats, "float.tif")).tolist() == [[0, 128, 255]]


def test_a_float_image_outside_0_to_1_is_refused_not_clipped(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "folder")
    path = root / "train" / "dog" / "bright.tif"
    Image.fromarray(np.full((8, 8), 200.0, dtype=np.float32)).save(path)
    with pytest.raises(ValueError, match=rf"{path} holds 'F' pixels from 200 to 200, outside the 0..1"):
        load_imagefolder(str(root), 8)


# --- a symlink loop ----------------------------------------------------------------------------------


def test_a_symlink_loop_is_refused_naming_the_link(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _image_folder(tmp_path / "folder")
    os.symlink("../cat", root / "train" / "cat" / "again")
    with pytest.raises(ValueError, match=rf"symlink loop: {root / 'train' / 'cat' / 'again'} is .*/cat again"):
        load_labels("imagefolder", str(root))
    message = _refused(tmp_path, "validate", capsys, "data.name=imagefolder", f"data.root={root}", *SPLIT)
    assert "remove the link" in message


def test_a_symlinked_class_folder_is_no_loop(tmp_path: Path) -> None:
    elsewhere = _image_folder(tmp_path / "elsewhere")
    root = _image_folder(tmp_path / "folder", classes=("cat",))
    os.symlink(elsewhere / "train" / "dog", root / "train" / "dog")
    assert np.bincount(load_labels("imagefolder", str(root)).train).tolist() == [12, 12]


# --- a relative data.root ----------------------------------------------------------------------------


def test_a_relative_root_is_saved_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _image_folder(tmp_path / "small")
    monkeypatch.chdir(tmp_path)
    _, config, pinned = load_pipeline_file(SMOKE, ["data.name=imagefolder", "data.root=small", *SPLIT], local=False)
    assert config.model_dump(mode="json")["data"]["root"] == str(tmp_path / "small")
    assert pinned["data"]["root"] == str(tmp_path / "small")  # what `relay tune` builds its trials from (they chdir)
    monkeypatch.setenv("HOME", str(tmp_path))
    _, config, _ = load_pipeline_file(SMOKE, ["data.name=imagefolder", "data.root=~/small", *SPLIT], local=False)
    assert config.data.root == str(tmp_path / "small")


# --- class names that differ only in Unicode normalisation --------------------------------------------


def test_a_test_class_spelled_nfd_is_trains_class_spelled_nfc(tmp_path: Path) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "één"), unicodedata.normalize("NFD", "één")
    assert nfc != nfd
    root = _image_folder(tmp_path / "folder", classes=("c1", nfc))
    _write_png(root / "test" / nfd / "0.png", 3)
    _write_png(root / "test" / "c1" / "0.png", 4)
    labels = load_labels("imagefolder", str(root))
    assert labels.num_classes == 2 and labels.test.tolist() == [0, 1]
    assert load_imagefolder(str(root), 8).test.labels.tolist() == [0, 1]


def test_a_candidate_sources_root_is_absolute_like_the_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Domain similarity tells a source of the target's own dataset by comparing roots: a relative source root
    beside the absolute data.root read the target's folder as another dataset."""
    from pipelines.builders.domain_similarity import CandidateSource

    monkeypatch.chdir(tmp_path)
    source = CandidateSource(name="own", dataset="imagefolder", root="small")
    assert source.root == str(tmp_path / "small")


def test_a_truncated_image_found_by_a_stage_asks_for_a_new_run_not_a_resume(tmp_path: Path) -> None:
    """The run's failure said "Resume with: relay resume", and the resume refused the fixed folder as changed."""
    from orchestrator.errors import StageError, unreadable_data_in

    path = tmp_path / "train" / "cat" / "0.png"
    _write_png(path, 7)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="does not decode as an image") as info:
        data.imagefolder_image(str(path), 8)
    with pytest.raises(StageError) as failed:  # as the runner raises it: from the stage's error
        raise StageError("g00/train", info.value, 1) from info.value
    assert unreadable_data_in(failed.value) is info.value


def test_an_image_folders_class_names_reach_the_evaluation(tmp_path: Path) -> None:
    """Plots, MLflow and configs said only 0..k-1 of a folder whose classes are named cat and dog."""
    import json

    from pipelines.stages.common import dataset_class_names
    from pipelines.stages.evaluate import class_labels, classes_file

    root = _image_folder(tmp_path / "pets", classes=("dog", "cat"))
    _, config, _ = load_pipeline_file(SMOKE, ["data.name=imagefolder", f"data.root={root}", *SPLIT], local=False)
    names = dataset_class_names(config.data)
    assert names == ("cat", "dog")  # torchvision's order: sorted folder names
    assert class_labels([0, 1], names) == ["0 cat", "1 dog"]
    assert json.loads(classes_file([1], names)) == [{"class": 0, "dataset_class": 1, "name": "dog"}]  # a subset
    assert class_labels([0, 1], ()) == ["0", "1"]  # digits: the ids are the names
