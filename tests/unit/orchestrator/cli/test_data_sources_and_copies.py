"""`relay data import` as found in use (a contributor adding a source, a user moving data to S3): a new source is
listed by --help and refused --image-size in one line; the commands and paths it prints for an S3 dataset
paste as they are; a Relay dataset is copied to another store with its digest, checked, not refused."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
from PIL import Image

from orchestrator.cli import main
from pipelines.datasets import imports, shards
from pipelines.registry import DATA
from tests.unit.orchestrator.cli.problems import problem_lines


def tiles(folder: Path | None, options: object) -> imports.SourceData:
    """A source a contributor might add: 12 images of 2 classes, 3x6x6, no --image-size, not an in-memory dataset."""
    images = np.arange(12 * 3 * 6 * 6, dtype=np.int64).reshape(12, 3, 6, 6).astype(np.uint8)
    labels = np.arange(12) % 2
    return imports.SourceData(["a", "b"], (3, 6, 6), {"train": (12, lambda: iter([(images, labels)]))})


@pytest.fixture
def new_source(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(imports.SOURCES, "tiles", imports.Source("tiles", "twelve 3x6x6 test tiles", tiles))
    monkeypatch.setitem(DATA.sources, "tiles", "twelve 3x6x6 test tiles")  # what the package registers
    return "tiles"


def test_a_new_source_given_image_size_is_one_line_exit_2(
    new_source: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """It was a KeyError traceback: the refusal looked the source up among the in-memory datasets."""
    dest = tmp_path / "dest"
    assert main(["data", "import", new_source, str(dest), "--image-size", "8"]) == 2
    assert problem_lines(capsys.readouterr().err) == [
        "--image-size: source 'tiles' is imported at its own size and takes no --image-size, which resizes only "
        "the sources that take it (imagefolder); drop --image-size"
    ]
    assert not dest.exists()
    assert main(["data", "import", new_source, str(dest)]) == 0
    assert shards.read_manifest(str(dest)).image_shape == (3, 6, 6)


def test_import_help_lists_every_registered_source(new_source: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["data", "import", "--help"])
    assert done.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps at spaces and after hyphens
    for name, description in DATA.sources.items():
        assert "".join(f"{name}: {description}".split()) in text, name


# --- S3 (moto's server, started here on 127.0.0.1) ----------------------------------------------


@pytest.fixture
def s3(s3: pafs.S3FileSystem) -> pafs.S3FileSystem:
    """The shared S3 server (conftest), with the bucket these tests write to."""
    s3.create_dir("relay")
    return s3


def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def printed(out: str) -> dict[str, str]:
    """`relay data import/info`'s `label  text` lines."""
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def test_an_s3_import_prints_a_pasteable_command_and_paths_before_the_query(
    s3: pafs.S3FileSystem, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    query = f"?endpoint_override={s3_endpoint}&scheme=http"
    uri = f"s3://relay/imf{query}"
    assert main(["data", "import", str(image_folder(tmp_path / "photos")), uri, "--image-size", "8"]) == 0
    summary = printed(capsys.readouterr().out)
    assert shlex.split(summary["use"]) == ["relay", "run", "CONFIG", "data.name=parquet", f"data.uri={uri}"]
    assert summary["files"].startswith(f"s3://relay/imf/samples.csv{query}: ")
    assert main(["data", "info", uri, "--verify"]) == 0
    assert printed(capsys.readouterr().out)["files"].startswith(f"s3://relay/imf/samples.csv{query}: ")


def test_a_relay_dataset_is_copied_to_s3_and_back_with_its_digest(
    s3: pafs.S3FileSystem, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before the fix: `relay data import data/mid s3://...` was refused ("is a Relay dataset ... no import needed")."""
    local = tmp_path / "mid"
    assert main(["data", "import", str(image_folder(tmp_path / "photos")), str(local), "--image-size", "8"]) == 0
    digest = shards.read_manifest(str(local)).digest
    uri = f"s3://relay/mid?endpoint_override={s3_endpoint}&scheme=http"
    capsys.readouterr()
    assert main(["data", "import", str(local), uri]) == 0
    summary = printed(capsys.readouterr().out)
    assert summary["digest"] == digest
    assert summary["note"] == f"copied from {local}: every file's sha256 and the digest match the source's"
    assert main(["data", "info", uri, "--verify"]) == 0  # shards and samples.csv hashed, every image decoded
    assert printed(capsys.readouterr().out)["digest"] == digest
    assert s3.get_file_info(f"relay/mid/{shards.IMPORT_MARKER}").type == pafs.FileType.NotFound

    assert main(["data", "import", str(local), uri]) == 0  # again: the same dataset is there
    assert printed(capsys.readouterr().out)["note"] == f"already a copy of {local}: nothing written"

    back = tmp_path / "back"
    assert main(["data", "import", uri, str(back)]) == 0  # from the store, to a cluster mount
    assert shards.read_manifest(str(back)).digest == digest
    assert sorted(p.relative_to(back) for p in back.rglob("*")) == sorted(
        p.relative_to(local) for p in local.rglob("*")
    )


def test_a_copy_refuses_a_changed_source_shard_and_leaves_nothing(
    s3: pafs.S3FileSystem, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    local = tmp_path / "d"
    assert main(["data", "import", "digits", str(local)]) == 0
    shard = local / shards.read_manifest(str(local)).splits["train"].shards[0].path
    data = bytearray(shard.read_bytes())
    data[-200:-192] = bytes(8)  # 8 bytes changed in place: same size
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["data", "import", str(local), f"s3://relay/bad?endpoint_override={s3_endpoint}&scheme=http"]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert f"{local}: train/part-00000.parquet: sha256 " in problem and "nothing was copied" in problem
    assert s3.get_file_info(pafs.FileSelector("relay/bad", allow_not_found=True, recursive=True)) == []


def test_a_copy_refuses_options_that_would_change_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    local = tmp_path / "d"
    assert main(["data", "import", "digits", str(local)]) == 0
    capsys.readouterr()
    assert main(["data", "import", str(local), str(tmp_path / "e"), "--encoding", "png"]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith(f"SOURCE {local} is a Relay dataset, which an import copies as it is")
    assert not (tmp_path / "e").exists()
