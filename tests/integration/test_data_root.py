"""A dataset read from `data.root` (an image folder), through the real CLI.

The stage cache keys a folder by its listing (`data.root_digest`: path, size and mtime of every
file the loader reads), not by its path: images removed or rewritten at the same path miss the
old split, while an unchanged folder still hits it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.integration.relay_cli import ROOT, relay, relay_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
# In-process stages: the folder's digest and the cache are the point, not Ray (each Ray start cost about 8 s).
SPLIT = [
    "data.head_count=10",
    "data.imbalance_ratio=2",
    "data.holdout_per_class=2",
    "data.labeled_fraction=0.5",
    "run.executor=local",
]


def image_folder(root: Path) -> Path:
    for label, name in enumerate(("cat", "dog")):
        for i in range(14):
            path = root / "train" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 100 * label + i, dtype=np.uint8)).save(path)
    return root


def root_digest(workspace: Path, run_id: str) -> str:
    text = (workspace / "artifacts" / "runs" / run_id / "config.yaml").read_text()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if "root_digest:" in line)


def test_a_changed_image_folder_misses_the_split_cache_and_an_unchanged_one_hits_it(tmp_path: Path) -> None:
    root, workspace = image_folder(tmp_path / "images"), tmp_path / "ws"
    args = ["data.name=imagefolder", f"data.root={root}", *SPLIT, "--stop-after", "data/split"]

    def run(run_id: str) -> str:
        result = relay("run", SMOKE, *args, "--run-id", run_id, workspace=workspace)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    run("first")
    assert "cache hit" in run("same"), "an unchanged folder reuses the split"
    for i in range(2):
        (root / "train" / "dog" / f"{i}.png").unlink()
    assert "cache hit" not in run("changed")
    assert root_digest(workspace, "first") == root_digest(workspace, "same") != root_digest(workspace, "changed")


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: what a command that writes nothing leaves unchanged."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


def test_a_resume_on_a_changed_or_missing_folder_is_refused_and_on_the_folder_put_back_goes_on(tmp_path: Path) -> None:
    root, workspace, aside = image_folder(tmp_path / "images"), tmp_path / "ws", tmp_path / "aside"
    args = ["data.name=imagefolder", f"data.root={root}", *SPLIT]
    started = relay("run", SMOKE, *args, "--stop-after", "data/split", "--run-id", "r", workspace=workspace)
    assert started.returncode == 0, started.stderr[-3000:]
    aside.mkdir()
    (root / "train" / "dog" / "0.png").rename(aside / "0.png")  # a rename keeps the file's size and mtime
    before = tree(workspace)

    refused = relay("resume", "r", workspace=workspace)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "data.root_digest: the data changed since run r started" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert tree(workspace) == before, "a refused resume writes nothing"

    (aside / "0.png").rename(root / "train" / "dog" / "0.png")
    root.rename(aside / "images")
    gone = relay("resume", "r", workspace=workspace)
    assert gone.returncode == 2 and f"{root}" in gone.stderr, gone.stderr[-3000:]
    assert tree(workspace) == before
    (aside / "images").rename(root)
    resumed = relay("resume", "r", "--stop-after", "g00/train", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "cache hit" in resumed.stdout + resumed.stderr, "the split made before the pause is reused"


def relay_in(cwd: Path, *args: str, workspace: Path) -> subprocess.CompletedProcess:
    """The real CLI run from ``cwd``: where a relative `data.root` is read from."""
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    return subprocess.run(command, cwd=cwd, env=relay_env(workspace), capture_output=True, text=True, timeout=600)


def test_a_relative_root_is_recorded_absolute_so_a_resume_from_elsewhere_reads_the_same_folder(tmp_path: Path) -> None:
    """`data.root=images` given in one folder, resumed from another that holds an `images/` of its own: the
    record names the first, so the resume reads it (the relative record read the other, and was refused)."""
    here, elsewhere, workspace = tmp_path / "here", tmp_path / "elsewhere", tmp_path / "ws"
    image_folder(here / "images")
    image_folder(elsewhere / "images")
    (elsewhere / "images" / "train" / "dog" / "0.png").unlink()
    args = ["data.name=imagefolder", "data.root=images", *SPLIT]
    started = relay_in(here, "run", SMOKE, *args, "--stop-after", "data/split", "--run-id", "r", workspace=workspace)
    assert started.returncode == 0, started.stderr[-3000:]
    record = (workspace / "artifacts" / "runs" / "r" / "config.yaml").read_text()
    assert f"root: {here / 'images'}" in record
    resumed = relay_in(elsewhere, "resume", "r", "--stop-after", "g00/train", workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "cache hit" in resumed.stdout + resumed.stderr, "the split made before the pause is reused"
