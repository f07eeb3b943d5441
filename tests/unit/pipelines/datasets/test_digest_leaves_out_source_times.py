"""The dataset's digest leaves out the times of the source's files: the same bytes imported again, after only `chmod`
(or `touch`, a hard link, `cp -p`), are the same dataset, so the stages cached on it are not run again. Manifests an
older Relay wrote (the times inside the digested source) still verify and still catch an edit; an older Relay still
verifies a manifest written now. Real folders of PNG files, real imports.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.datasets import checks, imports, shards


def image_folder(root: Path) -> Path:
    """Two classes of two small PNGs under ``root``/train, a folder Relay's own import reads (other tests use it too)."""
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6, 3), i * 40, dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def _new_times(image: Path) -> None:
    """A ctime of its own for ``image``, no byte changed: the kernel's file clock ticks every few ms."""
    time.sleep(0.02)
    image.chmod(0o600)


def test_a_source_whose_times_alone_changed_imports_to_the_same_digest(tmp_path: Path) -> None:
    """Before the fix: the second import's digest differed, shards byte for byte the same."""
    source, dest = image_folder(tmp_path / "src"), tmp_path / "dest"
    imports.import_dataset(str(source), str(dest), {})
    first = shards.read_manifest(str(dest))
    _new_times(source / "train" / "cat" / "0.png")
    shutil.rmtree(dest)  # what the refusal of the repeated import says to do
    imports.import_dataset(str(source), str(dest), {})
    second = shards.read_manifest(str(dest))
    assert second.splits == first.splits  # the same shards, byte for byte (their sha256)
    assert second.digest == first.digest
    assert second.source_times != first.source_times  # recorded, for the next repeated import to compare


def test_the_times_are_still_compared_by_a_repeated_import(tmp_path: Path) -> None:
    source, dest = image_folder(tmp_path / "src"), tmp_path / "dest"
    imports.import_dataset(str(source), str(dest), {})
    assert "already imported" in imports.import_dataset(str(source), str(dest), {})["note"]
    _new_times(source / "train" / "cat" / "0.png")
    with pytest.raises(ValueError, match=r"same names and sizes, but modified since"):
        imports.import_dataset(str(source), str(dest), {})


def _as_an_older_relay_wrote_it(dest: Path) -> None:
    """dataset.json as Relay wrote it before ``source_times``: the times inside source.files, the digest over them."""
    data = json.loads((dest / shards.MANIFEST).read_text())
    data["source"]["files"]["times"] = data.pop("source_times")
    data.pop("digest")
    data["digest"] = shards.body_digest(data)
    (dest / shards.MANIFEST).write_text(json.dumps(data, indent=1))


def test_a_manifest_an_older_relay_wrote_still_verifies_and_catches_new_times(tmp_path: Path) -> None:
    source, dest = image_folder(tmp_path / "src"), tmp_path / "dest"
    imports.import_dataset(str(source), str(dest), {})
    _as_an_older_relay_wrote_it(dest)
    older = shards.read_manifest(str(dest))  # its digest checked against its body
    assert "times" in older.source["files"] and older.source_times == ""
    checks.verify_digests(str(dest), older)
    assert "already imported" in imports.import_dataset(str(source), str(dest), {})["note"]
    _new_times(source / "train" / "dog" / "1.png")
    with pytest.raises(ValueError, match=r"same names and sizes, but modified since"):
        imports.import_dataset(str(source), str(dest), {})


def test_an_older_relay_verifies_a_manifest_written_now(tmp_path: Path) -> None:
    """An older Relay reads the fields it knows (``source_times`` it ignores) and hashes them with the format."""
    source, dest = image_folder(tmp_path / "src"), tmp_path / "dest"
    imports.import_dataset(str(source), str(dest), {})
    data = json.loads((dest / shards.MANIFEST).read_text())
    assert data["format"] == shards.FORMAT and "times" not in data["source"]["files"] and data["source_times"]
    known = ("format", "classes", "image_shape", "encoding", "rows_per_group", "splits", "source")
    assert shards.body_digest({key: data[key] for key in known}) == data["digest"]
