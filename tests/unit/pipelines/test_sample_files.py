"""Each sample id of an image folder maps back to its file (before, nothing recorded which photo an id was).

The import writes DEST/samples.csv; a run reading the folder in place (`data.root`) writes path and
class into its split table. Each mapping is checked by reading the file it names and comparing the
pixels with what Relay's dataset returns for that id, on a folder with what the listing skips
(hidden files, a type torchvision does not read) and a nested folder inside a class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from PIL import Image

from pipelines.data import load_imagefolder, load_labels
from pipelines.datasets import imports, shards
from pipelines.datasets.rows import ShardRows
from pipelines.image_folder import imagefolder_image
from pipelines.split import split_table

SIZE = 8
DATA = {"name": "imagefolder", "fold": 0, "head_count": 6, "imbalance_ratio": 2, "labeled_fraction": 0.5}
DATA = {**DATA, "holdout_per_class": 2, "class_order": None, "classes": None}


def _folder(root: Path, splits: tuple[str, ...]) -> Path:
    """Distinct images (their value is their index), with a hidden file, a .txt and a nested folder the listing must
    treat as torchvision does: file names that would sort otherwise than by their index."""
    rng = np.random.default_rng(1)
    for split in splits:
        for name in ("zebra", "ant", "moth"):
            folder = root / split / name
            for i in range(9):
                where = folder / "deep" if i == 4 else folder
                where.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (5 + i, 6, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(where / f"{10 - i}.png")
            Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / ".0.png")
            (folder / "notes.txt").write_text("not an image")
    return root


def test_the_import_writes_each_ids_file_and_class(tmp_path: Path) -> None:
    source = _folder(tmp_path / "src", ("train", "test"))
    dest = str(tmp_path / "dest")
    summary = imports.import_dataset(str(source), dest, {"image_size": SIZE})
    assert summary["files"].startswith(f"{dest}/{shards.SAMPLE_FILES}")
    manifest = shards.read_manifest(dest)
    table = pacsv.read_csv(f"{dest}/{shards.SAMPLE_FILES}").to_pylist()
    assert [row["split"] for row in table].count("train") == manifest.splits["train"].count == 27
    assert not any("/." in row["path"] or row["path"].endswith(".txt") for row in table)
    for row in table:
        rows = ShardRows(dest, manifest, row["split"])
        stored = rows.read(np.asarray([row["sample_id"]]))[0]
        assert np.array_equal(stored, imagefolder_image(str(source / row["path"]), SIZE).numpy()), row
        assert row["path"].split("/")[:2] == [row["split"], row["class"]]
    assert manifest.source["files_written"][shards.SAMPLE_FILES]


def test_a_data_root_split_names_each_rows_file_and_class(tmp_path: Path) -> None:
    for splits in (("train",), ("train", "test")):
        root = _folder(tmp_path / "-".join(splits), splits)
        data = {**DATA, "root": str(root)}
        table = split_table(data, load_labels("imagefolder", str(root))).to_pylist()
        loaded = load_imagefolder(str(root), SIZE)
        assert {row["subset"] for row in table} == {"labeled", "unlabeled", "test"}
        for row in table:
            own = loaded.test if row["subset"] == "test" and loaded.test is not None else loaded.train
            expected = imagefolder_image(str(root / row["path"]), SIZE).numpy()
            assert np.array_equal(own.images[row["sample_id"]].numpy(), expected), row
            assert own.class_names[int(own.labels[row["sample_id"]])] == row["class"]


def test_info_names_the_file_list_and_verify_checks_it(tmp_path: Path) -> None:
    dest = str(tmp_path / "dest")
    imports.import_dataset(str(_folder(tmp_path / "src", ("train",))), dest, {"image_size": SIZE})
    assert (
        imports.describe(dest, True)["files"] == f"{dest}/{shards.SAMPLE_FILES}: each sample id's image file and class"
    )
    with open(f"{dest}/{shards.SAMPLE_FILES}", "a") as table:
        table.write('"train",0,"train/ant/x.png","ant"\n')
    with pytest.raises(shards.DatasetError, match=rf"{shards.SAMPLE_FILES}: sha256 .* changed after the import"):
        imports.describe(dest, True)


def test_a_missing_file_list_is_named_missing_with_what_to_do(tmp_path: Path) -> None:
    """`relay data info` listed a samples.csv that was gone, and --verify said only 'could not read it ([Errno 2] ...)'."""
    dest = str(tmp_path / "dest")
    imports.import_dataset(str(_folder(tmp_path / "src", ("train",))), dest, {"image_size": SIZE})
    Path(dest, shards.SAMPLE_FILES).unlink()
    missing = f"{dest}/{shards.SAMPLE_FILES}: missing (the manifest lists it"
    assert imports.describe(dest, False)["files"].startswith(missing)
    with pytest.raises(shards.DatasetError) as refused:
        imports.describe(dest, True)
    assert str(refused.value).startswith(missing) and "re-import into a new path" in str(refused.value)
