"""SIGTERM (kill, timeout, Slurm, Kubernetes) during a real `relay data import` ends it as Ctrl-C does: DEST removed,
one line saying so and how to start again, exit 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.datasets import shards

ROOT = Path(__file__).resolve().parents[4]


def _source_that_blocks(root: Path) -> Path:
    """ROOT/train/a with 300 4x4 PNGs, and ROOT/train/b whose one image is a FIFO: opening it blocks until a writer
    comes, so the import waits there, after its first chunk went into shards, for as long as the test needs."""
    rng = np.random.default_rng(0)
    (root / "train" / "a").mkdir(parents=True)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(root / "train" / "a" / f"{i}.png")
    (root / "train" / "b").mkdir()
    os.mkfifo(root / "train" / "b" / "blocks.png")
    return root


def _wait_for(path: Path, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert child.poll() is None, f"the import ended ({child.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"the import wrote no {path.name} in 120 s"
        time.sleep(0.05)


def test_sigterm_during_an_import_removes_dest_says_so_and_exits_143(tmp_path: Path) -> None:
    """Before the fix: exit 143 with nothing said, DEST left with import-in-progress.json and partial shards."""
    source = _source_that_blocks(tmp_path / "src")
    dest = tmp_path / "dest"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_"))}
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "data", "import", str(source), str(dest), "--rows-per-group", "1"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(dest / shards.IMPORT_MARKER, child)  # the import has started writing
        _wait_for(dest / "train" / "part-00000.parquet", child)  # and wrote a shard, which it must remove
        child.send_signal(signal.SIGTERM)  # to the import alone, as `kill PID` sends it
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 143, err[-3000:]
    assert "Traceback" not in err and out == ""
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            f"WARNING pipelines.datasets.imports: import interrupted; what it wrote was removed ({dest} does not exist); "
            f"start it again with: relay data import {source} {dest} --rows-per-group 1"
        )
    ), err[-3000:]
    assert not dest.exists()
