"""A Relay dataset (what `relay data import` writes) given as an image folder: said so, with the setting that reads it.

Before the fix: as `data.root` or as an import's SOURCE it got "train holds no class folder; place the images
as .../train/<class>/<image>", while the reverse mistake (an image folder as `data.uri`) is told
what it is. Real import, real CLI, exit 2 and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from pipelines.datasets import imports

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("data") / "digits"
    imports.import_dataset("digits", str(dest), {})
    return dest


def test_a_relay_dataset_read_as_an_image_folder_is_named_with_the_setting_that_reads_it(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """As an import's SOURCE a Relay dataset is copied as it is (test_data_sources_and_copies.py)."""
    args = ["validate", SMOKE, f"run.workspace={tmp_path / 'ws'}", "data.name=imagefolder", f"data.root={dataset}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{dataset} is a Relay dataset (Parquet shards, as `relay data import` writes them)" in err, err
    assert f"`data.name=parquet data.uri={dataset}`" in err and "place the images" not in err
    assert not (tmp_path / "ws").exists()


def test_an_empty_train_folder_keeps_the_image_folder_advice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "src" / "train").mkdir(parents=True)
    assert main(["data", "import", str(tmp_path / "src"), str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert f"place the images as {tmp_path / 'src' / 'train'}/<class>/<image>" in err and "Relay dataset" not in err
