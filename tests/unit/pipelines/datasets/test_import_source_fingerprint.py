"""A folder source's ``files(folder)`` must return ``checks.files_fingerprint(...)``; anything else is refused.

Before the fix: a source whose ``files`` returned its own dict (``{name: size}``) imported once, and the repeated
import ended in a traceback, exit 1: ``KeyError: 'count'`` from ``checks.files_change``. Now the import refuses
such a source up front (exit 2, naming the source and what ``files`` must return, nothing written), and a dataset
such a source recorded before is refused on its repeated import with what to do. Real .npy files, real shards,
the real CLI; the source is added to ``SOURCES`` as docs/ARCHITECTURE.md says a source is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.cli import main
from pipelines.datasets import checks, imports
from tests.unit.orchestrator.cli.problems import problem_lines


def _open(folder: Path | None, options: Any) -> imports.SourceData:
    images, labels = np.load(folder / "images.npy"), np.load(folder / "labels.npy")
    return imports.SourceData(["a", "b"], (3, 4, 4), {"train": (len(labels), lambda: iter([(images, labels)]))})


def _sizes(folder: Path) -> dict[str, Any]:
    """The mistake: the source's own fingerprint, names and sizes."""
    return {path.name: path.stat().st_size for path in sorted(folder.iterdir())}


def _fingerprint(folder: Path) -> dict[str, Any]:
    return checks.files_fingerprint(folder, [("train", folder / "images.npy"), ("train", folder / "labels.npy")])


def _source(files: Any) -> imports.Source:
    return imports.Source(
        "npyarrays",
        "a folder holding images.npy and labels.npy",
        _open,
        lambda path: path if (path / "images.npy").is_file() else None,
        files=files,
    )


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    folder = tmp_path / "arrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "images.npy", rng.integers(0, 256, (6, 3, 4, 4), dtype=np.uint8))
    np.save(folder / "labels.npy", np.array([0, 1, 0, 1, 0, 1], dtype=np.int64))
    return folder


def test_a_source_whose_files_is_no_fingerprint_is_refused_naming_it(
    arrays: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(imports.SOURCES, "npyarrays", _source(_sizes))
    dest = tmp_path / "out"
    assert main(["data", "import", str(arrays), str(dest)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [problem] = problem_lines(err)
    assert problem.startswith(
        f"source 'npyarrays': its files({arrays}) returned a mapping of keys 'images.npy', 'labels.npy', without "
        "count, bytes, sha256, times as files_fingerprint makes them; a source's files(folder) must return "
        "pipelines.datasets.checks.files_fingerprint(folder, [(split, path), ...]) over the files an import reads"
    )
    assert not dest.exists(), "refused before anything was written"


def test_a_dataset_such_a_source_recorded_is_refused_on_its_repeated_import(
    arrays: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The dataset an older Relay let such a source write; its source since fixed, imported again into it."""
    dest = tmp_path / "out"
    options = {"encoding": "auto", "image_size": None, "rows_per_group": None}
    identity = {"name": "npyarrays", "location": str(arrays), "options": {"encoding": "auto"}, "files": _sizes(arrays)}
    imports._write(_source(_sizes), arrays, str(dest), identity, options)  # what the import wrote before the fix
    monkeypatch.setitem(imports.SOURCES, "npyarrays", _source(_fingerprint))
    capsys.readouterr()

    assert main(["data", "import", str(arrays), str(dest)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [problem] = problem_lines(err)
    assert problem == (
        f"{dest} was imported from {arrays} by a source whose files(folder) returned a mapping of keys 'images.npy', "
        "'labels.npy', without count, bytes, sha256 as files_fingerprint makes them, so whether that folder changed "
        f"since cannot be told; remove {dest} (or import into a new path) to re-import"
    )

    fresh = tmp_path / "fresh"  # the fixed source imports, and its repeated import is the no-op it should be
    assert main(["data", "import", str(arrays), str(fresh)]) == 0
    assert main(["data", "import", str(arrays), str(fresh)]) == 0
    assert "already imported from this source: nothing written" in capsys.readouterr().out
