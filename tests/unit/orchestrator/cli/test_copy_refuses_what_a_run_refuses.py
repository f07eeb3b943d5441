"""`relay data import SRC DEST` of a Relay dataset whose shard has the wrong schema, its manifest sealed around it
(each shard's bytes and sha256, and the digest, as CONTRACTS' by-hand recipe says): refused, exit 2, nothing written.

Before the fix: the copy checked each file's sha256 against the manifest, which matched, so it exited 0 saying
every file's sha256 and the digest matched the source's, and advised `relay run`, which refused the copy for its
wrong schema; `relay data info SRC` already refused it. Real Parquet shards, the real CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from pipelines.datasets import checks, shards
from tests.unit.orchestrator.cli.problems import problem_lines
from tests.unit.pipelines.datasets.toy import rewrite_shard, write_toy


def label_as_string(table: pa.Table) -> pa.Table:
    return table.set_column(1, "label", table.column("label").cast(pa.string()))


def image_as_binary(table: pa.Table) -> pa.Table:
    pixels = [bytes(row) for row in table.column("image").to_pylist()]
    return table.set_column(2, "image", pa.array(pixels, pa.binary()))


def no_sample_id(table: pa.Table) -> pa.Table:
    return table.drop_columns(["sample_id"])


@pytest.mark.parametrize("edit", [label_as_string, image_as_binary, no_sample_id], ids=lambda edit: edit.__name__)
def test_a_copy_of_a_shard_of_the_wrong_schema_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, edit: Callable[[pa.Table], pa.Table]
) -> None:
    source, dest = tmp_path / "src", tmp_path / "dest"
    manifest, _, _ = write_toy(source, n=40)
    second = manifest.splits["train"].shards[1]
    rewrite_shard(source, manifest, 1, edit(pq.read_table(source / second.path)))
    assert main(["data", "info", str(source)]) == 2  # what info said already
    capsys.readouterr()

    assert main(["data", "import", str(source), str(dest)]) == 2
    captured = capsys.readouterr()
    [problem] = problem_lines(captured.err)
    assert problem.startswith(f"SOURCE {source}: {second.path}: wrong schema: expected "), problem
    assert problem.endswith(f"; {checks.WRONG_SCHEMA_FIX}; nothing was copied"), problem
    assert "copied from" not in captured.out and "relay run" not in captured.out
    assert not dest.exists()


def test_a_copy_into_a_folder_an_import_left_keeps_it_when_the_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Refused before the copy clears what an unfinished import left at DEST: nothing there is touched."""
    source, dest = tmp_path / "src", tmp_path / "dest"
    manifest, _, _ = write_toy(source, n=40)
    rewrite_shard(source, manifest, 0, label_as_string(pq.read_table(source / manifest.splits["train"].shards[0].path)))
    shards.write_marker(str(dest))
    assert main(["data", "import", str(source), str(dest)]) == 2
    assert "wrong schema" in capsys.readouterr().err
    assert [path.name for path in dest.iterdir()] == [shards.IMPORT_MARKER]


def test_the_wrong_schema_fix_names_the_documented_writer_and_section() -> None:
    """The fix the message gives points at what docs/CONTRACTS.md holds: the writer and the section's title."""
    contracts = (Path(__file__).resolve().parents[4] / "docs" / "CONTRACTS.md").read_text()
    assert "## Writing a dataset yourself" in contracts and "`pipelines.datasets.shards.write_dataset(" in contracts
    assert "pipelines.datasets.shards.write_dataset" in checks.WRONG_SCHEMA_FIX
    assert "Writing a dataset yourself" in checks.WRONG_SCHEMA_FIX and "relay data import" in checks.WRONG_SCHEMA_FIX
