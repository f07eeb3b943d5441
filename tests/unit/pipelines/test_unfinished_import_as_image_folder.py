"""A folder a killed `relay data import` left (its marker, train/part-00000.parquet, no dataset.json) given as an
image folder: said to be an unfinished import, with the fix that works, re-running the import.

Before the fix: `data.name=imagefolder data.root=big3` said it was a Relay dataset to read with `data.name=parquet
data.uri=big3`, which then said it was an unfinished import. Real import killed with SIGKILL, real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from pipelines.datasets import shards
from tests.unit.orchestrator.cli.test_cli_data import killed_import

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")


def test_a_killed_imports_folder_read_as_an_image_folder_is_told_to_re_run_the_import(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, dest = killed_import(tmp_path)
    assert (dest / shards.IMPORT_MARKER).is_file() and not (dest / shards.MANIFEST).exists()

    args = ["validate", SMOKE, f"run.workspace={tmp_path / 'ws'}", "data.name=imagefolder", f"data.root={dest}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{dest}: an unfinished import" in err and f"re-run the import (`relay data import SOURCE {dest}`)" in err
    assert "data.name=parquet" not in err and "is a Relay dataset" not in err
    assert not (tmp_path / "ws").exists()
