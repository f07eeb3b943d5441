"""`relay data import` deletes only what an import of its own left (before the fix it wiped a user's own Parquet files).

A folder of train/part-NNNNN.parquet without dataset.json was taken for an unfinished import and
cleared without asking, and `relay data info` / `relay run data.uri=` advised that import. Now
only a folder holding the import's marker counts as unfinished; anything else is refused, exit 2.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from pipelines.datasets import shards
from tests.unit.orchestrator.cli.test_cli_data import killed_import

ROOT = Path(__file__).resolve().parents[4]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


def _own_parquet(folder: Path, relative: str) -> bytes:
    """A user's own Parquet file, written with pyarrow as a user writes one; its bytes."""
    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": [1]}), folder / relative)
    return (folder / relative).read_bytes()


@pytest.mark.parametrize("relative", ["train/part-00000.parquet", "data/part-0.parquet"])
def test_own_parquet_survives_an_import_and_no_advice_points_the_import_at_it(
    tmp_path: Path, relative: str, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "mypq"
    before = _own_parquet(folder, relative)
    for command in (["data", "info", str(folder)], ["validate", str(SMOKE), "data.name=parquet", f"data.uri={folder}"]):
        assert main([*command, f"run.workspace={tmp_path / 'ws'}"] if command[0] == "validate" else command) == 2
        err = capsys.readouterr().err
        assert f"relay data import SOURCE {folder}" not in err and "unfinished import" not in err, err
        assert "`relay data import SOURCE NEW_DEST`" in err and "digits, synthetic, a CIFAR-10/100 folder" in err
    assert main(["data", "import", "digits", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is not empty and holds no Relay dataset (it holds {relative};" in err, err
    assert "import into a new or empty destination" in err
    assert (folder / relative).read_bytes() == before
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [relative]


def test_a_relay_dataset_that_lost_its_manifest_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "d"
    assert main(["data", "import", "digits", str(dest)]) == 0
    (dest / shards.MANIFEST).unlink()  # lost, or not synced yet
    shard = (dest / "train" / "part-00000.parquet").read_bytes()
    assert main(["data", "import", "digits", str(dest)]) == 2
    assert "holds no Relay dataset (it holds train/part-00000.parquet;" in capsys.readouterr().err
    assert (dest / "train" / "part-00000.parquet").read_bytes() == shard


def test_an_unfinished_imports_marker_beside_the_users_files_keeps_them_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before the fix: the refusal listed import-in-progress.json among the files, then said there was none."""
    dest = tmp_path / "d"
    shards.write_marker(str(dest))
    before = _own_parquet(dest, "mine/mine.parquet")
    assert main(["data", "import", "digits", str(dest)]) == 2
    err = capsys.readouterr().err
    assert f"besides an unfinished import's {shards.IMPORT_MARKER} it holds files an import never writes" in err, err
    assert f"no {shards.IMPORT_MARKER}" not in err
    assert (dest / "mine" / "mine.parquet").read_bytes() == before and (dest / shards.IMPORT_MARKER).is_file()


def test_an_import_killed_mid_way_is_cleared_and_imported_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real `relay data import` killed with SIGKILL (no cleanup can run) after it wrote shards."""
    source, dest = killed_import(tmp_path)
    assert (dest / shards.IMPORT_MARKER).is_file() and not (dest / shards.MANIFEST).exists()

    assert main(["data", "info", str(dest)]) == 2
    err = capsys.readouterr().err
    assert f"{dest}: an unfinished import" in err and f"re-run the import (`relay data import SOURCE {dest}`)" in err
    assert main(["data", "import", str(source), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "held what an unfinished import left (" in out and "301 images" in out, out
    assert not (dest / shards.IMPORT_MARKER).exists()
    assert main(["data", "info", str(dest), "--verify"]) == 0
